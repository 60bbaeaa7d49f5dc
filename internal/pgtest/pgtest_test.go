package pgtest

import (
	"context"
	"os"
	"strings"
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
	open := Conn(t, u)
	Refuse(t, u)
	if err := ping(u); err == nil {
		t.Error("a refused database answers")
	}
	if err := open.Ping(context.Background()); err == nil {
		t.Error("a connection made before Refuse still answers")
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

// TestADatabaseURLThatDoesNotAnswerFallsBack sets DATABASE_URL to a port
// nothing listens on: the server on 127.0.0.1:5432 or a throwaway cluster is
// used instead, and that is said loudly.
func TestADatabaseURLThatDoesNotAnswerFallsBack(t *testing.T) {
	for _, env := range []string{
		"postgres://postgres:hush@127.0.0.1:1/test?sslmode=disable&connect_timeout=2",
		"host=127.0.0.1 port=1 password=hush",
	} {
		var loud strings.Builder
		u, source, c, err := find(env, &loud)
		if c != nil {
			t.Cleanup(func() {
				if err := c.stop(); err != nil {
					t.Error(err)
				}
			})
		}
		if strings.Contains(loud.String(), "hush") || (err != nil && strings.Contains(err.Error(), "hush")) {
			t.Errorf("the password is shown: %s %v", loud.String(), err)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "DATABASE_URL") || !strings.Contains(err.Error(), "127.0.0.1:5432") {
				t.Errorf("the reason for no server does not name what was tried: %v", err)
			}
			if _, berr := binDir(); berr != nil && ping(LocalURL) != nil {
				skipped.Add(1)
				skipWhy = err
				t.Skipf("no PostgreSQL here to fall back to: %v", err)
			}
			t.Fatalf("no fallback for DATABASE_URL %s: %v", redacted(env), err)
		}
		if u == env {
			t.Fatalf("find returned DATABASE_URL %s, which does not answer", redacted(env))
		}
		if err := ping(u); err != nil {
			t.Errorf("the fallback %s does not answer: %v", source, err)
		}
		if !strings.HasSuffix(source, passedOver) {
			t.Errorf("the source %q does not say DATABASE_URL was passed over", source)
		}
		if msg := loud.String(); !strings.Contains(msg, "DATABASE_URL") || !strings.Contains(msg, "NOT DATABASE_URL") {
			t.Errorf("the fallback was not said loudly: %q", msg)
		}
		t.Logf("fell back to %s", source)
	}
}

func TestADatabaseURLThatAnswersIsUsed(t *testing.T) {
	admin := Server(t)
	var loud strings.Builder
	u, source, c, err := find(admin, &loud)
	if c != nil {
		c.stop()
	}
	if err != nil || u != admin {
		t.Fatalf("find with DATABASE_URL %s = %s, %v", admin, u, err)
	}
	if !strings.HasPrefix(source, "DATABASE_URL") || loud.Len() != 0 {
		t.Errorf("source %q, said %q", source, loud.String())
	}
}
