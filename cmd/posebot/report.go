package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
)

// quantiles are the percentiles of a distribution, in milliseconds.
type quantiles struct {
	P50 float64  `json:"p50"`
	P90 *float64 `json:"p90,omitempty"`
	P99 float64  `json:"p99"`
	Max *float64 `json:"max,omitempty"`
}

// report is a run's result; its JSON field names are posebot's interface.
type report struct {
	Clients int `json:"clients"`
	Joined  int `json:"joined"`
	Rooms   int `json:"rooms"`
	PerRoom int `json:"per_room"`
	// Schedule is "tick" (poses in step with the room's tick, Copies per
	// tick) or "free" (Hz poses a second).
	Schedule          string    `json:"schedule"`
	Hz                float64   `json:"hz,omitempty"`
	Copies            int       `json:"copies,omitempty"`
	Hands             bool      `json:"hands"`
	JoinMS            quantiles `json:"join_ms"`
	LatencyMS         quantiles `json:"latency_ms"`
	StalenessMS       quantiles `json:"staleness_ms"`
	PosesSent         uint64    `json:"poses_sent"`
	UpdatesReceived   uint64    `json:"updates_received"`
	DatagramsSent     uint64    `json:"datagrams_sent"`
	DatagramsReceived uint64    `json:"datagrams_received"`
	BytesSent         uint64    `json:"bytes_sent"`
	BytesReceived     uint64    `json:"bytes_received"`
	Resyncs           uint64    `json:"resyncs"`
	// Moved counts the sessions that ended with a goodbye moved and went on
	// at the node the room moved to.
	Moved       uint64            `json:"moved"`
	Errors      map[string]uint64 `json:"errors"`
	TickMS      int64             `json:"tick_ms"`
	DurationS   float64           `json:"duration_s"`
	ServerCPUS  *float64          `json:"server_cpu_s,omitempty"`
	ServerRSSMB *float64          `json:"server_rss_mb,omitempty"`
	// LoadCPUS is posebot's own CPU time over the run.
	LoadCPUS *float64 `json:"load_cpu_s,omitempty"`
	// HostUDP is what this host's UDP counters saw over the run: every
	// process's traffic, the server's and the bots' when they share it.
	HostUDP *hostUDP `json:"host_udp,omitempty"`
	// MemberBytesPerS and MemberDatagramsPerS are what a bot received a
	// second (datagram payloads and control frames; pose datagrams and
	// heartbeats), over the time each was in its room.
	MemberBytesPerS     float64 `json:"member_bytes_received_per_s"`
	MemberDatagramsPerS float64 `json:"member_datagrams_received_per_s"`
	// WalkM is the side of the square the bots walked in, in metres;
	// absent when each circled where it was placed.
	WalkM float64 `json:"walk_m,omitempty"`
	// Interest is the rooms' interest management as joined said; absent
	// when every member got every avatar at every tick.
	Interest *interest `json:"interest,omitempty"`
	// Near and Far are what the bots that read at full speed saw of the
	// avatars near them (within the radius or among their nearest, where
	// the bots stood at the moment) and far from them. Without interest
	// management every pair is near.
	Near pairs `json:"near"`
	Far  pairs `json:"far"`
	// Slow is what the bots that read their socket at a limited rate saw;
	// absent without --slow. Others is the rest of the bots.
	Slow   *receivers `json:"slow,omitempty"`
	Others receivers  `json:"others"`
}

// interest is a room's interest management (codec.Interest).
type interest struct {
	RadiusM  float64 `json:"radius_m"`
	Nearest  int     `json:"nearest"`
	FarEvery int     `json:"far_every"`
	CellM    float64 `json:"cell_m"`
}

// pairs is what receivers saw of one class of pairs: the latency of each
// pose received and the staleness samples.
type pairs struct {
	LatencyMS   quantiles `json:"latency_ms"`
	StalenessMS quantiles `json:"staleness_ms"`
	// Samples counts the staleness samples.
	Samples uint64 `json:"samples"`
}

// receivers is what a group of bots received.
type receivers struct {
	Clients int `json:"clients"`
	// RateBytesPerS is the rate the group read its sockets at; absent for
	// full speed.
	RateBytesPerS float64   `json:"rate_bytes_per_s,omitempty"`
	StalenessMS   quantiles `json:"staleness_ms"`
	// BytesPerS and DatagramsPerS are received per bot a second.
	BytesPerS     float64 `json:"bytes_received_per_s"`
	DatagramsPerS float64 `json:"datagrams_received_per_s"`
	// Updates counts the pose updates (seqs) of which a bot received a
	// part, each bot's counted; Torn those of them it did not receive
	// whole, and TornFraction their share. Skipped counts the updates
	// between a bot's first and last that it received no part of.
	Updates      uint64  `json:"updates"`
	Torn         uint64  `json:"torn"`
	TornFraction float64 `json:"torn_fraction"`
	Skipped      uint64  `json:"skipped"`
}

// hostUDP is the host's UDP datagrams a second over a run, and the datagrams
// its sockets dropped because their receive buffers were full.
type hostUDP struct {
	InPerS       float64 `json:"in_per_s"`
	OutPerS      float64 `json:"out_per_s"`
	RcvbufErrors uint64  `json:"rcvbuf_errors"`
}

func ptr(v float64) *float64 { return &v }

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// errorTotal sums the errors of every kind.
func (r *report) errorTotal() uint64 {
	var n uint64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// writeSummary prints the report as a table for people.
func (r *report) writeSummary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	row("clients joined", "%d / %d in %d rooms of %d", r.Joined, r.Clients, r.Rooms, r.PerRoom)
	row("schedule", "%s", r.scheduleSummary())
	row("join", "p50 %.0f ms  p99 %.0f ms", r.JoinMS.P50, r.JoinMS.P99)
	row("latency", "p50 %.0f ms  p90 %.0f ms  p99 %.0f ms  max %.0f ms", r.LatencyMS.P50, *r.LatencyMS.P90, r.LatencyMS.P99, *r.LatencyMS.Max)
	row("staleness", "p50 %.0f ms  p99 %.0f ms  max %.0f ms", r.StalenessMS.P50, r.StalenessMS.P99, *r.StalenessMS.Max)
	row("poses sent", "%d (%.0f/s)", r.PosesSent, float64(r.PosesSent)/r.DurationS)
	row("updates received", "%d (%.0f/s)", r.UpdatesReceived, float64(r.UpdatesReceived)/r.DurationS)
	row("datagrams", "sent %d  received %d", r.DatagramsSent, r.DatagramsReceived)
	row("bytes", "sent %d  received %d", r.BytesSent, r.BytesReceived)
	row("resyncs", "%d", r.Resyncs)
	row("moved", "%d", r.Moved)
	row("errors", "%s", errorSummary(r.Errors))
	if n := r.Errors[errRefused]; n > 0 {
		row("", "%d connections refused by the server: past its bound on sessions from one address (posecast --max-sessions-per-ip; this machine is not bounded in development mode)", n)
	}
	row("server tick", "%d ms", r.TickMS)
	if r.ServerCPUS != nil {
		row("server CPU", "%.1f s (%.2f cores)", *r.ServerCPUS, *r.ServerCPUS/r.DurationS)
		row("server RSS peak", "%.1f MB", *r.ServerRSSMB)
	}
	if r.HostUDP != nil {
		row("host UDP", "in %.0f/s  out %.0f/s  receive buffer drops %d", r.HostUDP.InPerS, r.HostUDP.OutPerS, r.HostUDP.RcvbufErrors)
	}
	row("per member", "%.0f bytes/s  %.1f datagrams/s received", r.MemberBytesPerS, r.MemberDatagramsPerS)
	if r.WalkM > 0 {
		row("walk", "in a %g m square", r.WalkM)
	}
	if in := r.Interest; in != nil {
		row("interest", "radius %g m, nearest %d, far every %d ticks, cells of %g m", in.RadiusM, in.Nearest, in.FarEvery, in.CellM)
		row("near pairs", "%s", r.Near.summary())
		row("far pairs", "%s", r.Far.summary())
	} else {
		row("interest", "none: every pair is near")
	}
	if r.Slow != nil {
		row("slow bots", "%s", r.Slow.summary())
	}
	row("other bots", "%s", r.Others.summary())
	if r.LoadCPUS != nil {
		row("posebot CPU", "%.1f s (%.2f cores)", *r.LoadCPUS, *r.LoadCPUS/r.DurationS)
	}
	row("duration", "%.1f s", r.DurationS)
	tw.Flush()
}

func (p pairs) summary() string {
	return fmt.Sprintf("latency p50 %.0f ms  p99 %.0f ms  staleness p50 %.0f ms  p99 %.0f ms  (%d samples)",
		p.LatencyMS.P50, p.LatencyMS.P99, p.StalenessMS.P50, p.StalenessMS.P99, p.Samples)
}

func (g *receivers) summary() string {
	rate := "full speed"
	if g.RateBytesPerS > 0 {
		rate = fmt.Sprintf("%.0f bytes/s", g.RateBytesPerS)
	}
	return fmt.Sprintf("%d reading at %s: staleness p50 %.0f ms  p99 %.0f ms  %.0f bytes/s  updates %d  torn %d (%.1f %%)  skipped %d",
		g.Clients, rate, g.StalenessMS.P50, g.StalenessMS.P99, g.BytesPerS, g.Updates, g.Torn, 100*g.TornFraction, g.Skipped)
}

// scheduleSummary says how the bots timed their poses.
func (r *report) scheduleSummary() string {
	if r.Schedule == "free" {
		return fmt.Sprintf("free-running, %g Hz", r.Hz)
	}
	return fmt.Sprintf("in step with the %d ms tick, %d per tick", r.TickMS, max(1, r.Copies))
}

func writeJSON(path string, r *report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// bigRoomTable renders reports of bots walking in big rooms as the big-room
// table of docs/BENCHMARKS.md: what interest management costs and saves.
func bigRoomTable(reports []*report) string {
	var b strings.Builder
	b.WriteString("| members joined | interest | server CPU (cores) | server CPU per member | server RSS | posebot CPU (cores) | received per member | datagrams per member | near staleness p50 / p99 | far staleness p50 / p99 | resyncs | slow bots: staleness p99, torn, skipped | others: torn, skipped | errors |\n")
	b.WriteString("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|\n")
	for _, r := range reports {
		cpu, perMember, rss, load := "–", "–", "–", "–"
		if r.ServerCPUS != nil {
			cpu = fmt.Sprintf("%.2f", *r.ServerCPUS/r.DurationS)
			perMember = fmt.Sprintf("%.2f ms/s", *r.ServerCPUS/r.DurationS/float64(max(1, r.Joined))*1000)
			rss = fmt.Sprintf("%.0f MB", *r.ServerRSSMB)
		}
		if r.LoadCPUS != nil {
			load = fmt.Sprintf("%.2f", *r.LoadCPUS/r.DurationS)
		}
		mode := "none: every avatar every tick"
		if in := r.Interest; in != nil {
			mode = fmt.Sprintf("%g m, %d nearest, far every %d", in.RadiusM, in.Nearest, in.FarEvery)
		}
		slow := "–"
		if s := r.Slow; s != nil {
			slow = fmt.Sprintf("%d at %.0f B/s: %.0f ms, %.1f %%, %d", s.Clients, s.RateBytesPerS, s.StalenessMS.P99, 100*s.TornFraction, s.Skipped)
		}
		far := "–"
		if r.Far.Samples > 0 {
			far = fmt.Sprintf("%.0f / %.0f ms", r.Far.StalenessMS.P50, r.Far.StalenessMS.P99)
		}
		fmt.Fprintf(&b, "| %d / %d | %s | %s | %s | %s | %s | %.1f KB/s | %.1f /s | %.0f / %.0f ms | %s | %d | %s | %.1f %%, %d | %s |\n",
			r.Joined, r.Clients, mode, cpu, perMember, rss, load,
			r.MemberBytesPerS/1000, r.MemberDatagramsPerS,
			r.Near.StalenessMS.P50, r.Near.StalenessMS.P99, far, r.Resyncs, slow,
			100*r.Others.TornFraction, r.Others.Skipped, errorSummary(r.Errors))
	}
	return b.String()
}

// markdownTable renders reports as the load table of docs/BENCHMARKS.md.
func markdownTable(reports []*report) string {
	var b strings.Builder
	b.WriteString("| clients | rooms × size | poses | server CPU (cores) | server RSS | posebot CPU (cores) | poses in/s | datagrams out/s | bytes out/s | latency p50 / p99 | staleness p99 | errors |\n")
	b.WriteString("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range reports {
		cpu, rss, load := "–", "–", "–"
		if r.ServerCPUS != nil {
			cpu = fmt.Sprintf("%.2f", *r.ServerCPUS/r.DurationS)
			rss = fmt.Sprintf("%.0f MB", *r.ServerRSSMB)
		}
		if r.LoadCPUS != nil {
			load = fmt.Sprintf("%.2f", *r.LoadCPUS/r.DurationS)
		}
		schedule := "per tick"
		if r.Schedule == "free" {
			schedule = fmt.Sprintf("%g Hz", r.Hz)
		} else if r.Copies > 1 {
			schedule = fmt.Sprintf("%d per tick", r.Copies)
		}
		fmt.Fprintf(&b, "| %d | %d × %d | %s | %s | %s | %s | %.0f | %.0f | %.0f | %.0f / %.0f ms | %.0f ms | %s |\n",
			r.Joined, r.Rooms, r.PerRoom, schedule, cpu, rss, load,
			float64(r.PosesSent)/r.DurationS,
			float64(r.DatagramsReceived)/r.DurationS,
			float64(r.BytesReceived)/r.DurationS,
			r.LatencyMS.P50, r.LatencyMS.P99, r.StalenessMS.P99, errorSummary(r.Errors))
	}
	return b.String()
}
