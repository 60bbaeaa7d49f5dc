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
	if r.LoadCPUS != nil {
		row("posebot CPU", "%.1f s (%.2f cores)", *r.LoadCPUS, *r.LoadCPUS/r.DurationS)
	}
	row("duration", "%.1f s", r.DurationS)
	tw.Flush()
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
