package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// serverUsage follows the server's CPU time and resident memory over a run,
// from /proc when the server runs here (--server-pid), else from the
// process metrics on its /metrics endpoint.
type serverUsage struct {
	pid        int
	metricsURL string

	ok       bool
	cpuStart float64 // seconds
	cpuEnd   float64
	rssPeak  float64 // bytes
}

func newServerUsage(pid int, server string) *serverUsage {
	return &serverUsage{pid: pid, metricsURL: server + "/metrics"}
}

// read returns the server's CPU seconds and resident bytes now.
func (s *serverUsage) read(ctx context.Context) (cpu, rss float64, err error) {
	if s.pid > 0 {
		return readProc(s.pid)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.metricsURL, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", s.metricsURL, err)
	}
	value := func(name string) (float64, error) {
		f, ok := families[name]
		if !ok || len(f.GetMetric()) == 0 {
			return 0, fmt.Errorf("%s has no %s", s.metricsURL, name)
		}
		m := f.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue(), nil
		}
		return m.GetGauge().GetValue(), nil
	}
	if cpu, err = value("process_cpu_seconds_total"); err != nil {
		return 0, 0, err
	}
	rss, err = value("process_resident_memory_bytes")
	return cpu, rss, err
}

// readProc reads a local process's CPU seconds (user and system) and
// resident set from /proc.
func readProc(pid int) (cpu, rss float64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name, in parentheses, may hold spaces: split after it.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	const clockTicks = 100 // USER_HZ on Linux
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, 0, fmt.Errorf("/proc/%d/status: VmRSS %q", pid, rest)
			}
			return (utime + stime) / clockTicks, kb * 1024, nil
		}
	}
	return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// begin notes the CPU time at the start of the run.
func (s *serverUsage) begin(ctx context.Context) {
	cpu, rss, err := s.read(ctx)
	if err != nil {
		return
	}
	s.ok, s.cpuStart, s.cpuEnd, s.rssPeak = true, cpu, cpu, rss
}

// sample notes the CPU time so far and the resident memory now.
func (s *serverUsage) sample(ctx context.Context) {
	if !s.ok {
		return
	}
	cpu, rss, err := s.read(ctx)
	if err != nil {
		return // the server may be gone; keep what was seen
	}
	s.cpuEnd = cpu
	s.rssPeak = max(s.rssPeak, rss)
}

// udpCounts are this host's UDP datagram counters, from /proc/net/snmp:
// with server and bots on one host, every datagram either sends counts once
// out and once in.
type udpCounts struct {
	in, out, rcvbufErrors uint64
}

// readUDP reads the host's UDP counters.
func readUDP() (udpCounts, error) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return udpCounts{}, err
	}
	var names []string
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "Udp: ")
		if !ok {
			continue
		}
		if names == nil {
			names = strings.Fields(rest)
			continue
		}
		var c udpCounts
		for i, v := range strings.Fields(rest) {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || i >= len(names) {
				return udpCounts{}, fmt.Errorf("/proc/net/snmp: Udp %q", rest)
			}
			switch names[i] {
			case "InDatagrams":
				c.in = n
			case "OutDatagrams":
				c.out = n
			case "RcvbufErrors":
				c.rcvbufErrors = n
			}
		}
		return c, nil
	}
	return udpCounts{}, fmt.Errorf("/proc/net/snmp: no Udp counters")
}
