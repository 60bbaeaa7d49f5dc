package transport

import (
	"strings"
	"testing"

	"github.com/posecast/posecast/codec"
)

// Every type the table says a client sends is one the session handles:
// sent empty, each gets what it asks for or a refusal of what it holds,
// never "not a message a client sends". A type added to the table and not
// to the session fails here.
func TestTheSessionHandlesEveryTypeAClientSends(t *testing.T) {
	ts := startServer(t)
	for typ, from := range codec.Types() {
		if from&codec.FromClient == 0 || typ == codec.TypeHello {
			continue // hello opens every session, and is tested there
		}
		t.Run(typ, func(t *testing.T) {
			c, _ := join(t, ts, "lobby", "u-"+typ)
			if err := c.Send(codec.New(typ)); err != nil {
				t.Fatal(err)
			}
			// The session handles a client's messages in order: once the
			// ping is answered, any refusal of the message has come.
			if _, err := c.Request(testContext(t), &codec.Ping{}); err != nil {
				t.Fatal(err)
			}
			for _, e := range c.View().Errors {
				if strings.Contains(e.Message, "not a message a client sends") {
					t.Errorf("%s: %s %s", typ, e.Code, e.Message)
				}
			}
		})
	}
}

// The check above does fail for a type the session does not take.
func TestAServerTypeSentByAClientIsRefused(t *testing.T) {
	ts := startServer(t)
	c, _ := join(t, ts, "lobby", "ada")
	if err := c.Send(codec.New(codec.TypePong)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Request(testContext(t), &codec.Ping{}); err != nil {
		t.Fatal(err)
	}
	if errs := c.View().Errors; len(errs) != 1 || !strings.Contains(errs[0].Message, "not a message a client sends") {
		t.Errorf("errors %+v, want pong refused as not a client's", errs)
	}
}
