package codec

import (
	"encoding/json"
	"flag"
	"maps"
	"os"
	"slices"
	"testing"
)

var update = flag.Bool("update", false, "write the page's copy of the table of message types")

// pageTypes is where the page's tests read the table of message types.
const pageTypes = "../web/test/message-types.json"

// The page's tests check its handling against the table's copy that it
// reads; the copy must be the table: a type added here and not there fails.
func TestThePageReadsTheTableOfMessageTypes(t *testing.T) {
	want := make(map[string][]string)
	for typ, from := range Types() {
		if from&FromClient != 0 {
			want["client"] = append(want["client"], typ)
		}
		if from&FromServer != 0 {
			want["server"] = append(want["server"], typ)
		}
	}
	for _, k := range slices.Collect(maps.Keys(want)) {
		slices.Sort(want[k])
	}
	b, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	if *update {
		if err := os.WriteFile(pageTypes, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(pageTypes)
	if err != nil || string(got) != string(b) {
		t.Errorf("%s is not the table of message types (%v): go test ./codec -run TestThePageReadsTheTableOfMessageTypes -update writes it", pageTypes, err)
	}
}
