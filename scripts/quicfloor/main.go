// Command quicfloor measures what posecast's transport stack costs for
// posecast's traffic pattern, with none of posecast on the path: N
// connections on loopback, each sending a small datagram at --hz, and a
// server that sends every connection one tick-sized datagram per --tick.
// --stack quic uses bare QUIC connections; --stack webtransport adds HTTP/3
// and a WebTransport session per connection, as posecast has. It prints the
// cores each side used in the steady state, so that posecast's own figures
// can be read against this floor.
//
//	go run ./scripts/quicfloor --conns 2000 --stack webtransport
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posecast/posecast/certs"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
)

// datagramConn is what both stacks offer: a QUIC connection and a
// WebTransport session.
type datagramConn interface {
	SendDatagram([]byte) error
	ReceiveDatagram(context.Context) ([]byte, error)
	Context() context.Context
}

type options struct {
	stack    string
	addr     string
	conns    int
	hz       float64
	size     int
	tick     time.Duration
	tickSize int
	ramp     time.Duration
	duration time.Duration
	row      bool
}

func main() {
	var o options
	role := flag.String("role", "load", "serve (started by load) or load")
	flag.StringVar(&o.stack, "stack", "quic", "quic or webtransport")
	flag.StringVar(&o.addr, "addr", "127.0.0.1:24433", "server UDP address")
	flag.IntVar(&o.conns, "conns", 1000, "connections")
	flag.Float64Var(&o.hz, "hz", 20, "datagrams per second per connection, client to server")
	flag.IntVar(&o.size, "size", 20, "bytes per client datagram")
	flag.DurationVar(&o.tick, "tick", 200*time.Millisecond, "server send interval per connection")
	flag.IntVar(&o.tickSize, "tick-size", 1000, "bytes per server datagram")
	flag.DurationVar(&o.ramp, "ramp", 8*time.Second, "time to open every connection")
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "run length, ramp included")
	flag.BoolVar(&o.row, "row", false, "print the result as one Markdown table row")
	flag.Parse()
	if o.stack != "quic" && o.stack != "webtransport" {
		log.Fatalf("unknown stack %q", o.stack)
	}
	switch *role {
	case "serve":
		serve(o)
	case "load":
		load(o)
	default:
		log.Fatalf("unknown role %q", *role)
	}
}

func quicConfig() *quic.Config {
	return &quic.Config{EnableDatagrams: true, EnableStreamResetPartialDelivery: true, MaxIdleTimeout: 10 * time.Second, KeepAlivePeriod: 5 * time.Second}
}

// serve accepts connections until killed, drains what each sends and sends
// each a datagram every tick.
func serve(o options) {
	mgr, err := certs.NewSelfSigned(certs.SelfSignedConfig{})
	if err != nil {
		log.Fatal(err)
	}
	var mu sync.Mutex
	var all []datagramConn
	accepted := func(c datagramConn) {
		mu.Lock()
		all = append(all, c)
		mu.Unlock()
		for {
			if _, err := c.ReceiveDatagram(context.Background()); err != nil {
				return
			}
		}
	}
	go func() {
		payload := make([]byte, o.tickSize)
		for range time.Tick(o.tick) {
			mu.Lock()
			live := all[:0]
			for _, c := range all {
				if c.Context().Err() == nil {
					live = append(live, c)
				}
			}
			all = live
			conns := append([]datagramConn(nil), all...)
			mu.Unlock()
			for _, c := range conns {
				_ = c.SendDatagram(payload)
			}
		}
	}()
	if o.stack == "quic" {
		ln, err := quic.ListenAddr(o.addr, &tls.Config{GetCertificate: mgr.GetCertificate, NextProtos: []string{"floor"}}, quicConfig())
		if err != nil {
			log.Fatal(err)
		}
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				log.Fatal(err)
			}
			go accepted(c)
		}
	}
	wt := &webtransport.Server{
		H3: &http3.Server{
			Addr:       o.addr,
			TLSConfig:  http3.ConfigureTLSConfig(&tls.Config{GetCertificate: mgr.GetCertificate}),
			QUICConfig: quicConfig(),
		},
		CheckOrigin: func(*http.Request) bool { return true },
	}
	webtransport.ConfigureHTTP3Server(wt.H3)
	wt.H3.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := wt.Upgrade(w, r)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		accepted(sess)
	})
	log.Fatal(wt.ListenAndServe())
}

// load starts the server, opens the connections over one shared UDP socket,
// sends at the given rate and reports the steady state's CPU use.
func load(o options) {
	server := exec.Command(os.Args[0], "-role", "serve", "-stack", o.stack, "-addr", o.addr,
		"-tick", o.tick.String(), "-tick-size", strconv.Itoa(o.tickSize))
	server.Stderr = os.Stderr
	if err := server.Start(); err != nil {
		log.Fatal(err)
	}
	defer server.Process.Kill()
	time.Sleep(500 * time.Millisecond)

	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	raddr, err := net.ResolveUDPAddr("udp", o.addr)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	dial := func() (datagramConn, func(), error) {
		if o.stack == "quic" {
			c, err := tr.Dial(ctx, raddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"floor"}}, quicConfig())
			if err != nil {
				return nil, nil, err
			}
			return c, func() { c.CloseWithError(0, "") }, nil
		}
		d := &webtransport.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}},
			QUICConfig:      quicConfig(),
			DialAddr: func(ctx context.Context, _ string, tlsConf *tls.Config, conf *quic.Config) (*quic.Conn, error) {
				return tr.DialEarly(ctx, raddr, tlsConf, conf)
			},
		}
		_, sess, err := d.Dial(ctx, "https://"+o.addr+"/", nil)
		if err != nil {
			return nil, nil, err
		}
		return sess, func() { sess.CloseWithError(0, ""); d.Close() }, nil
	}

	var sent, received, failed atomic.Int64
	var wg sync.WaitGroup
	for i := range o.conns {
		wg.Go(func() {
			time.Sleep(time.Duration(int64(o.ramp) * int64(i) / int64(o.conns)))
			c, closeConn, err := dial()
			if err != nil {
				failed.Add(1)
				return
			}
			defer closeConn()
			go func() {
				for {
					if _, err := c.ReceiveDatagram(ctx); err != nil {
						return
					}
					received.Add(1)
				}
			}()
			payload := make([]byte, o.size)
			t := time.NewTicker(time.Duration(float64(time.Second) / o.hz))
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if c.SendDatagram(payload) == nil {
						sent.Add(1)
					}
				}
			}
		})
	}
	// The steady state: from a second after the ramp to the end.
	time.Sleep(o.ramp + time.Second)
	s0, r0, t0 := sent.Load(), received.Load(), time.Now()
	server0, load0 := cpuSeconds(server.Process.Pid), cpuSeconds(os.Getpid())
	<-ctx.Done()
	s1, r1, t1 := sent.Load(), received.Load(), time.Now()
	server1, load1 := cpuSeconds(server.Process.Pid), cpuSeconds(os.Getpid())
	wg.Wait()
	secs := t1.Sub(t0).Seconds()
	in, out := float64(s1-s0)/secs, float64(r1-r0)/secs
	serverCores, loadCores := (server1-server0)/secs, (load1-load0)/secs
	if o.row {
		fmt.Printf("| %s | %d | %d | %.0f | %.0f | %.2f | %.2f | %.2f |\n",
			o.stack, o.conns, failed.Load(), in, out, serverCores, loadCores, serverCores+loadCores)
		return
	}
	fmt.Printf("%s: %d connections (%d failed), %.0f Hz, %.0f s measured after the ramp\n", o.stack, o.conns, failed.Load(), o.hz, secs)
	fmt.Printf("datagrams/s to the server %.0f, from it %.0f\n", in, out)
	fmt.Printf("server %.2f cores, load %.2f cores, together %.2f\n", serverCores, loadCores, serverCores+loadCores)
}

// cpuSeconds returns a process's user and system CPU time from /proc.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		log.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	user, _ := strconv.ParseFloat(f[11], 64)
	system, _ := strconv.ParseFloat(f[12], 64)
	return (user + system) / 100 // USER_HZ
}
