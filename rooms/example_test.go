package rooms_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// quietMember is a member that drops what it is sent: the examples watch a
// room's events, not its traffic.
type quietMember struct{}

func (quietMember) SendPoses(uint32, [][][]byte) {}
func (quietMember) SendFrame([]byte)             {}
func (quietMember) MaxDatagramSize() int         { return codec.MaxDatagramSize }
func (quietMember) Close(*codec.Goodbye)         {}

// A listener reaches rooms that start when someone joins them: OnRoomStart
// attaches it to every room as it starts, before anyone is in it.
func ExampleRegistry_OnRoomStart() {
	reg, err := rooms.NewRegistry(&rooms.MemoryStore{}, rooms.Config{})
	if err != nil {
		panic(err)
	}
	defer reg.Close()
	users := make(chan string, 16)
	stop := reg.OnRoomStart(func(r *rooms.Room) {
		r.Subscribe(func(ev rooms.Event) {
			if strings.HasPrefix(ev.Name, "user_") {
				users <- ev.Room + ": " + ev.Name + " " + ev.User
			}
		})
	})
	defer stop()

	// No room is running yet; the join starts "lobby".
	m, err := reg.Join(context.Background(), "lobby", quietMember{}, rooms.JoinRequest{User: "ada", Device: "headset"})
	if err != nil {
		panic(err)
	}
	fmt.Println(<-users)
	m.Leave()
	fmt.Println(<-users)
	// Output:
	// lobby: user_joined ada
	// lobby: user_left ada
}

// An application follows who is where, as Phoenix.Presence's handle_metas
// does: each change with what joined, what left, and the metas each of
// those users has after it.
func ExampleRegistry_HandleMetas() {
	reg, err := rooms.NewRegistry(&rooms.MemoryStore{}, rooms.Config{})
	if err != nil {
		panic(err)
	}
	defer reg.Close()
	changes := make(chan string, 16)
	stop := reg.HandleMetas(func(c rooms.MetasChange) {
		for user := range c.Joins {
			changes <- fmt.Sprintf("%s: %s joined, on %d devices", c.Room, user, len(c.Metas[user]))
		}
		for user := range c.Leaves {
			changes <- fmt.Sprintf("%s: %s left a device, on %d now", c.Room, user, len(c.Metas[user]))
		}
	})
	defer stop()

	ctx := context.Background()
	headset, err := reg.Join(ctx, "plaza", quietMember{}, rooms.JoinRequest{User: "ada", Device: "headset"})
	if err != nil {
		panic(err)
	}
	fmt.Println(<-changes)
	if _, err := reg.Join(ctx, "plaza", quietMember{}, rooms.JoinRequest{User: "ada", Device: "laptop"}); err != nil {
		panic(err)
	}
	fmt.Println(<-changes)
	headset.Leave()
	fmt.Println(<-changes)
	// Output:
	// plaza: ada joined, on 1 devices
	// plaza: ada joined, on 2 devices
	// plaza: ada left a device, on 1 now
}

// presenceMember keeps the presence messages (presence_state and
// presence_diff) it is sent.
type presenceMember struct {
	quietMember
	msgs chan codec.Message
}

func (m presenceMember) SendFrame(frame []byte) {
	msg, err := codec.Decode(frame[4:])
	switch msg.(type) {
	case *codec.PresenceState, *codec.PresenceDiff:
		if err == nil {
			m.msgs <- msg
		}
	}
}

// Presence entries carry what the application knows of each user, looked
// up once per message for all its users, as Phoenix.Presence's fetch/2
// adds it.
func ExampleConfig_fetchPresence() {
	colours := map[string]string{"ada": "teal"} // the application's cache
	reg, err := rooms.NewRegistry(&rooms.MemoryStore{}, rooms.Config{
		FetchPresence: func(room string, entries map[string]codec.PresenceEntry) {
			for user, e := range entries {
				e.Extra = map[string]any{"colour": colours[user]}
				entries[user] = e
			}
		},
	})
	if err != nil {
		panic(err)
	}
	defer reg.Close()
	m := presenceMember{msgs: make(chan codec.Message, 4)}
	if _, err := reg.Join(context.Background(), "plaza", m, rooms.JoinRequest{User: "ada", Device: "headset"}); err != nil {
		panic(err)
	}
	st := (<-m.msgs).(*codec.PresenceState) // a joiner's first
	fmt.Println(st.State["ada"].Extra["colour"], len(st.State["ada"].Metas))
	// Output: teal 1
}
