package pgtest

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestAThrowawayClusterStartsAndStops makes the cluster that machines
// without a server get, whether or not this one has a server.
func TestAThrowawayClusterStartsAndStops(t *testing.T) {
	if _, err := binDir(); err != nil {
		skipped.Add(1)
		skipWhy = err
		t.Skipf("no PostgreSQL programs: %v", err)
	}
	c, err := startThrowaway()
	if err != nil {
		t.Fatal(err)
	}
	if err := ping(c.url); err != nil {
		t.Errorf("the cluster does not answer: %v", err)
	}
	if err := exec1(c.url, "CREATE DATABASE made_here"); err != nil {
		t.Errorf("create a database: %v", err)
	}
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	if err := ping(c.url); err == nil {
		t.Error("the cluster still answers after stop")
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("its directory is still there: %v", err)
	}
}

func TestEachDatabaseIsNewAndEmpty(t *testing.T) {
	urls := map[string]bool{}
	for range 2 {
		u := Database(t)
		if urls[u] {
			t.Fatalf("database %s given twice", u)
		}
		urls[u] = true
		var tables int
		if err := query1(u, &tables, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"); err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Errorf("a new database has %d tables", tables)
		}
	}
}

func TestRefuseMakesADatabaseUnreachableUntilAllow(t *testing.T) {
	u := Database(t)
	Refuse(t, u)
	if err := ping(u); err == nil {
		t.Error("a refused database answers")
	}
	Allow(t, u)
	if err := ping(u); err != nil {
		t.Errorf("an allowed database does not answer: %v", err)
	}
}

func TestWithDatabase(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"the database of a URL is replaced", "postgres://u:p@h:5/old?sslmode=disable", "postgres://u:p@h:5/new?sslmode=disable", false},
		{"a URL without a database gets one", "postgresql://h", "postgresql://h/new", false},
		{"a key=value DSN is refused", "host=h dbname=old", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := withDatabase(tt.in, "new")
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("withDatabase(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
