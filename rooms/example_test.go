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

func (quietMember) SendDatagram([]byte)  {}
func (quietMember) SendFrame([]byte)     {}
func (quietMember) MaxDatagramSize() int { return codec.MaxDatagramSize }
func (quietMember) Close(*codec.Goodbye) {}

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
