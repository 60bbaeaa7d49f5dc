package rooms_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/posecast/posecast/rooms"
)

func TestEntityAndWorldSizesAreBounded(t *testing.T) {
	cfg := testConfig()
	cfg.MaxWorldBytes = 64 << 10
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		m := w.join("lobby", "ada", newMember(t, "ada"))
		big := strings.Repeat("x", rooms.MaxEntityBytes)
		if _, err := m.CreateEntity(rooms.Components{"blob": big}); !errors.Is(err, rooms.ErrInvalid) {
			t.Errorf("an entity over %d bytes: %v, want ErrInvalid", rooms.MaxEntityBytes, err)
		}
		chunk := strings.Repeat("y", 10<<10)
		var ids []string
		for {
			id, err := m.CreateEntity(rooms.Components{"blob": chunk})
			if err != nil {
				if !errors.Is(err, rooms.ErrInvalid) {
					t.Fatalf("filling the world: %v", err)
				}
				break
			}
			ids = append(ids, id)
		}
		if len(ids) < 4 || len(ids) > 6 {
			t.Errorf("%d entities of 10 KiB fit in a 64 KiB world", len(ids))
		}
		if err := m.UpdateEntity(ids[0], rooms.Components{"more": chunk}); !errors.Is(err, rooms.ErrInvalid) {
			t.Errorf("growing an entity past the world's bound: %v, want ErrInvalid", err)
		}
		if err := m.UpdateEntity(ids[0], rooms.Components{"blob": "small"}); err != nil {
			t.Errorf("shrinking an entity: %v", err)
		}
		must(t, m.DeleteEntity(ids[1]))
		if _, err := m.CreateEntity(rooms.Components{"blob": chunk}); err != nil {
			t.Errorf("creating after deletes freed room: %v", err)
		}
	})
}

func TestPresenceMetaIsBounded(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		meta := map[string]any{"avatar_url": strings.Repeat("z", rooms.MaxMetaBytes)}
		_, err := w.reg.Join(context.Background(), "lobby", newMember(t, "ada"), rooms.JoinRequest{User: "ada", Meta: meta})
		if !errors.Is(err, rooms.ErrInvalid) {
			t.Errorf("a join with an oversized meta: %v, want ErrInvalid", err)
		}
	})
}
