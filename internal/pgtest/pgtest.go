// Package pgtest gives tests a real PostgreSQL database of their own, on any
// machine. It finds a server, in this order: the one DATABASE_URL names; one
// answering on 127.0.0.1:5432 as user postgres without a password; else a
// throwaway cluster that it makes with initdb and pg_ctl in a temporary
// directory, on a free loopback port, and stops when the tests end. As root
// it runs those as the postgres user (initdb refuses root), through runuser.
// When DATABASE_URL is set but cannot be used (its server does not answer),
// it says so on stderr and goes on down the list, naming on stderr the
// server it settles on; the log of each test that asks for a database names
// it always.
//
// A package whose tests use it wraps them in Main:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// Each call to Database creates an empty database and drops it when the
// test ends. When no server can be found or started, the tests that ask for
// one are skipped, and Main says so loudly at the end of the run.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// LocalURL is the server tried when DATABASE_URL is not set.
const LocalURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=2"

// passedOver ends the description of a server used instead of DATABASE_URL.
const passedOver = ", as DATABASE_URL cannot be used"

var (
	once    sync.Once
	server  string // admin URL of the server found or started
	source  string // which server that is, for the logs
	cluster *throwaway
	skipWhy error
	skipped atomic.Int64
	dbSeq   atomic.Int64
)

// Main runs m's tests, then stops the throwaway cluster if one was started
// and says on stderr if the tests did not run on DATABASE_URL's server
// though it was set, or were skipped for want of PostgreSQL. It returns the
// exit code for os.Exit.
func Main(m *testing.M) int {
	code := m.Run()
	if cluster != nil {
		if err := cluster.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stopping the throwaway cluster: %v\n", err)
			code = max(code, 1)
		}
	}
	if strings.HasSuffix(source, passedOver) {
		fmt.Fprintf(os.Stderr, "\n!!! pgtest: DATABASE_URL could not be used: the PostgreSQL tests ran on %s\n\n", strings.TrimSuffix(source, passedOver))
	}
	if n := skipped.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "\n%s\n!!! %d POSTGRES TESTS WERE SKIPPED: %v\n!!! Set DATABASE_URL, run PostgreSQL on 127.0.0.1:5432, or install its binaries (`make test` does, as root).\n%s\n\n",
			strings.Repeat("!", 78), n, skipWhy, strings.Repeat("!", 78))
	}
	return code
}

// Server returns the URL of a PostgreSQL server for administrative
// statements, finding or starting one on first use. It skips tb, loudly,
// when there is none to be had.
func Server(tb testing.TB) string {
	tb.Helper()
	once.Do(func() { server, source, cluster, skipWhy = find(os.Getenv("DATABASE_URL"), os.Stderr) })
	if skipWhy != nil {
		skipped.Add(1)
		fmt.Fprintf(os.Stderr, "!!! %s: SKIPPED, no PostgreSQL: %v\n", tb.Name(), skipWhy)
		tb.Skipf("no PostgreSQL: %v", skipWhy)
	}
	return server
}

// Database creates an empty database for tb and returns its URL. The
// database is dropped, connections and all, when tb ends.
func Database(tb testing.TB) string {
	tb.Helper()
	admin := Server(tb)
	tb.Logf("pgtest: a database on %s", source)
	name := fmt.Sprintf("posecast_test_%d_%d_%d", os.Getpid(), dbSeq.Add(1), time.Now().UnixNano()%1e6)
	if err := exec1(admin, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		if err := exec1(admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u, err := withDatabase(admin, name)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// Refuse makes the database at dbURL unreachable, as an outage would: it
// stops accepting connections, and every session on it is terminated. It
// returns once none is left. Allow undoes it.
func Refuse(tb testing.TB, dbURL string) {
	tb.Helper()
	name := dbName(tb, dbURL)
	admin := Server(tb)
	if err := exec1(admin, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH ALLOW_CONNECTIONS false"); err != nil {
		tb.Fatalf("pgtest: refuse connections: %v", err)
	}
	for i := 0; ; i++ {
		var left int
		err := query1(admin, &left, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name)
		if err != nil {
			tb.Fatalf("pgtest: terminate sessions: %v", err)
		}
		if left == 0 {
			return
		}
		if i == 200 {
			tb.Fatalf("pgtest: %d sessions of %s will not end", left, name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Allow lets connections to the database at dbURL in again after Refuse.
func Allow(tb testing.TB, dbURL string) {
	tb.Helper()
	if err := exec1(Server(tb), "ALTER DATABASE "+pgx.Identifier{dbName(tb, dbURL)}.Sanitize()+" WITH ALLOW_CONNECTIONS true"); err != nil {
		tb.Fatalf("pgtest: allow connections: %v", err)
	}
}

// dbName returns the name of the database at dbURL, unquoted.
func dbName(tb testing.TB, dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// find returns the admin URL of a server, which server that is, and the
// cluster it started if it had to, or why there is none. env is
// DATABASE_URL's value: when it is set but cannot be used, find says so on
// loud, goes on as if it were not set, and says on loud what it found.
func find(env string, loud io.Writer) (string, string, *throwaway, error) {
	if env == "" {
		return findLocal()
	}
	bad := usable(env)
	if bad == nil {
		return env, "DATABASE_URL (" + redacted(env) + ")", nil, nil
	}
	fmt.Fprintf(loud, "!!! pgtest: DATABASE_URL (%s) cannot be used: %v\n!!! pgtest: trying 127.0.0.1:5432, then a throwaway cluster\n", redacted(env), bad)
	u, source, c, err := findLocal()
	if err != nil {
		return "", "", nil, fmt.Errorf("DATABASE_URL (%s) cannot be used: %v; %w", redacted(env), bad, err)
	}
	fmt.Fprintf(loud, "!!! pgtest: the PostgreSQL tests use %s, NOT DATABASE_URL\n", source)
	return u, source + passedOver, c, nil
}

// findLocal is find without DATABASE_URL: a server on 127.0.0.1:5432, else a
// throwaway cluster.
func findLocal() (string, string, *throwaway, error) {
	if err := ping(LocalURL); err == nil {
		return LocalURL, "the server on 127.0.0.1:5432", nil, nil
	}
	c, err := startThrowaway()
	if err != nil {
		return "", "", nil, fmt.Errorf("nothing answers on 127.0.0.1:5432 and no cluster could be started: %w", err)
	}
	return c.url, "a throwaway cluster (" + redacted(c.url) + ", in " + c.dir + ")", c, nil
}

// usable checks that u is a postgres:// URL whose server answers.
func usable(u string) error {
	if _, err := withDatabase(u, "x"); err != nil {
		return errors.New("it is not a postgres:// URL") // the error would show a password
	}
	if err := ping(u); err != nil {
		// pgx gives a line per address tried: one line reads better in
		// the banners.
		return fmt.Errorf("it does not answer: %s", strings.Join(strings.Fields(err.Error()), " "))
	}
	return nil
}

// redacted returns the URL u without its password, for logs.
func redacted(u string) string {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "postgres" && p.Scheme != "postgresql") {
		return "not a postgres:// URL"
	}
	return p.Redacted()
}

// ping checks that the server at u answers, within 10s whatever u's
// connect_timeout.
func ping(u string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// Conn connects to the database at url for tb and closes the connection
// when tb ends.
func Conn(tb testing.TB, url string) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("pgtest: connect: %v", err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec1(u, sql string) error {
	return withConn(u, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql)
		return err
	})
}

func query1(u string, dst any, sql string, args ...any) error {
	return withConn(u, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, sql, args...).Scan(dst)
	})
}

// withConn runs f on a new connection to u, bounded in time.
func withConn(u string, f func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return f(ctx, conn)
}

// withDatabase returns the URL u with its database replaced by name.
func withDatabase(u, name string) (string, error) {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "postgres" && p.Scheme != "postgresql") {
		return "", fmt.Errorf("pgtest: %q is not a postgres:// URL", u)
	}
	p.Path = "/" + name
	return p.String(), nil
}

// throwaway is a PostgreSQL cluster in a temporary directory.
type throwaway struct {
	dir    string
	data   string
	pgCtl  string
	asUser []string // command prefix that runs as the cluster's owner
	url    string
}

// startThrowaway makes and starts a cluster on a free loopback port.
func startThrowaway() (*throwaway, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "posecast-pg-")
	if err != nil {
		return nil, err
	}
	c := &throwaway{dir: dir, data: filepath.Join(dir, "data"), pgCtl: filepath.Join(bin, "pg_ctl")}
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: the cluster belongs to postgres.
		pg, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root and there is no postgres user to own a cluster: %w", err)
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		c.asUser = []string{runuser, "-u", "postgres", "--"}
	}
	if out, err := c.run(filepath.Join(bin, "initdb"), "-D", c.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	// A free port can be taken between the check and the start: try a few.
	for range 5 {
		port, err := freePort()
		if err != nil {
			break
		}
		opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", port, dir)
		if _, err = c.run(c.pgCtl, "-D", c.data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "-o", opts, "start"); err == nil {
			c.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=5", port)
			return c, nil
		}
	}
	log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
	os.RemoveAll(dir)
	return nil, fmt.Errorf("pg_ctl start failed: %s", log)
}

func (c *throwaway) run(name string, args ...string) ([]byte, error) {
	argv := append(slices.Clone(c.asUser), name)
	argv = append(argv, args...)
	return exec.Command(argv[0], argv[1:]...).CombinedOutput()
}

// stop stops the cluster at once and removes its directory.
func (c *throwaway) stop() error {
	out, err := c.run(c.pgCtl, "-D", c.data, "-m", "immediate", "-w", "stop")
	if err != nil {
		err = fmt.Errorf("pg_ctl stop: %w: %s", err, out)
	}
	return errors.Join(err, os.RemoveAll(c.dir))
}

// binDir finds PostgreSQL's server programs: on PATH, else where Debian's
// packages put them (the newest version).
func binDir() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no initdb and pg_ctl on PATH or in /usr/lib/postgresql/*/bin")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
