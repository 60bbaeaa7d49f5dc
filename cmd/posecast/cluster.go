package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/rooms/cluster"
	"github.com/posecast/posecast/transport"
)

// leaseWait is how long a starting node waits for its cluster lease before
// it serves anyway (its rooms then wait for NATS).
const leaseWait = 10 * time.Second

// defaultNodeID names a node after its host, with a random suffix so that
// two processes on one host differ.
func defaultNodeID(host string) string {
	var b [2]byte
	rand.Read(b[:])
	var keep strings.Builder
	for _, r := range host {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.:@-", r)) && keep.Len() < 58 {
			keep.WriteRune(r)
		}
	}
	if keep.Len() == 0 {
		keep.WriteString("node")
	}
	return keep.String() + "-" + hex.EncodeToString(b[:])
}

// joinCluster connects to NATS (starting the embedded server first with
// --nats-embed) and returns the cluster node, not yet started, with what
// closes the connection (and the embedded server) after the node has left.
func joinCluster(o *options, presence *rooms.Collector, where func() codec.Location, load func() (int, int), log *slog.Logger) (*cluster.Node, func(), error) {
	urls := o.natsURL
	stopEmbedded := func() {}
	if o.natsEmbed {
		var err error
		if stopEmbedded, err = embedNATS(strings.Split(urls, ",")[0], log); err != nil {
			return nil, nil, err
		}
	}
	nc, err := nats.Connect(urls,
		nats.Name("posecast "+o.nodeID),
		nats.PingInterval(2*time.Second),
		nats.MaxPingsOutstanding(2),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(1<<20),
	)
	if err != nil {
		stopEmbedded()
		return nil, nil, fmt.Errorf("--nats-url %s: %w", urls, err)
	}
	node, err := cluster.New(cluster.Config{
		Conn:      nc,
		NodeID:    o.nodeID,
		Collector: presence,
		Advertise: where,
		Load:      load,
		Replicas:  o.natsReplicas,
		Logger:    log,
	})
	if err != nil {
		nc.Close()
		stopEmbedded()
		return nil, nil, err
	}
	leave := func() {
		node.Close()
		nc.Close()
		stopEmbedded()
	}
	return node, leave, nil
}

// startNode starts the node and waits a little for its lease: a node id that
// a live process holds stops the start; NATS that does not answer yet does
// not (the node serves, and places rooms once it does).
func startNode(ctx context.Context, node *cluster.Node, reg *rooms.Registry, log *slog.Logger) error {
	if err := node.Start(reg); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, leaseWait)
	defer cancel()
	err := node.WaitLease(wctx)
	switch {
	case errors.Is(err, cluster.ErrDuplicateNode):
		return err
	case err != nil:
		log.Warn("no cluster lease yet: serving, and placing no new rooms until NATS answers", "err", err)
	default:
		log.Info("cluster node up", "node", node.ID(), "incarnation", node.Incarnation())
	}
	return nil
}

// embedNATS runs a NATS server with JetStream in this process, listening on
// the host and port of natsURL, its store in a temporary directory. stop
// shuts it down and removes the directory.
func embedNATS(natsURL string, log *slog.Logger) (stop func(), err error) {
	u, err := url.Parse(strings.TrimSpace(natsURL))
	if err != nil {
		return nil, fmt.Errorf("--nats-embed: %w", err)
	}
	port := 4222
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("--nats-embed: port %q: %w", p, err)
		}
	}
	dir, err := os.MkdirTemp("", "posecast-nats-")
	if err != nil {
		return nil, err
	}
	s, err := natsserver.NewServer(&natsserver.Options{
		ServerName: "posecast-embedded",
		Host:       u.Hostname(),
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("--nats-embed: %w", err)
	}
	stop = func() {
		s.Shutdown()
		s.WaitForShutdown()
		os.RemoveAll(dir)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		stop()
		return nil, fmt.Errorf("--nats-embed: the NATS server did not start on %s:%d", u.Hostname(), port)
	}
	log.Warn("NATS embedded in this process (--nats-embed): for development only; its directory goes when the process does", "url", s.ClientURL())
	return stop, nil
}

// advertiseURL returns, for a node of a cluster, what tells the
// transport the URL that other nodes hand out for this one.
func advertiseURL(o *options, node *cluster.Node, srv **transport.Server) func() string {
	if node == nil {
		return nil
	}
	return func() string { return advertise(o, *srv).URL }
}

// advertise is where other nodes send clients for this node's rooms.
func advertise(o *options, srv *transport.Server) codec.Location {
	u := o.advertiseURL
	if u == "" {
		host := "127.0.0.1"
		if ip := srv.Addr().(*net.UDPAddr).IP; ip != nil && !ip.IsUnspecified() {
			host = ip.String()
		} else if lan := lanAddresses(); len(lan) > 0 {
			host = lan[0]
		}
		u = "https://" + net.JoinHostPort(host, strconv.Itoa(srv.Addr().(*net.UDPAddr).Port)) + transport.Path
	}
	loc := codec.Location{URL: u}
	loc.Current, loc.Next = srv.CertHashes()
	return loc
}
