package rooms_test

import (
	"testing"

	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/rooms/storetest"
)

func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) rooms.Store { return &rooms.MemoryStore{} })
}
