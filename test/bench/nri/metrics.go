package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The plugin host's metrics the benchmark reads (handlers/plugins/metrics.go).
const (
	metricRegistered = "crishim_nri_plugins_registered"
	metricEvents     = "crishim_nri_plugin_events_total"
)

// series is one sample of the text exposition format.
type series struct {
	name   string
	labels map[string]string
	value  float64
}

// metrics is a scrape of crishim's /metrics.
type metrics []series

// scrape reads crishim's metrics. The text format is parsed here rather
// than with prometheus/common's expfmt, which this module only has as an
// indirect dependency.
func scrape(addr string) (metrics, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return parseMetrics(string(b))
}

// parseMetrics parses the Prometheus text exposition format (comments are
// skipped; timestamps, which crishim never writes, are not accepted).
func parseMetrics(text string) (metrics, error) {
	var out metrics
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseSeries(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d %q: %w", n+1, line, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func parseSeries(line string) (series, error) {
	s := series{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, fmt.Errorf("no value")
	}
	s.name, line = line[:i], line[i:]
	if line[0] == '{' {
		line = line[1:]
		for {
			line = strings.TrimLeft(line, ", ")
			if line == "" {
				return s, fmt.Errorf("unterminated labels")
			}
			if line[0] == '}' {
				line = line[1:]
				break
			}
			k, rest, ok := strings.Cut(line, `="`)
			if !ok {
				return s, fmt.Errorf("bad label")
			}
			var v strings.Builder
			j := 0
			for ; j < len(rest) && rest[j] != '"'; j++ {
				if rest[j] == '\\' && j+1 < len(rest) {
					j++
					if rest[j] == 'n' {
						v.WriteByte('\n')
						continue
					}
				}
				v.WriteByte(rest[j])
			}
			if j == len(rest) {
				return s, fmt.Errorf("unterminated label value")
			}
			s.labels[strings.TrimSpace(k)] = v.String()
			line = rest[j+1:]
		}
	}
	f := strings.Fields(line)
	if len(f) != 1 {
		return s, fmt.Errorf("want one value, got %q", line)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, err
	}
	s.value = v
	return s, nil
}

// sum adds up the series of name whose labels include every pair in want
// (a plugin label compared by pluginName).
func (m metrics) sum(name string, want map[string]string) float64 {
	var total float64
next:
	for _, s := range m {
		if s.name != name {
			continue
		}
		for k, v := range want {
			got := s.labels[k]
			if k == "plugin" {
				got = pluginName(got)
			}
			if got != v {
				continue next
			}
		}
		total += s.value
	}
	return total
}

// has reports whether any series of name exists.
func (m metrics) has(name string) bool {
	for _, s := range m {
		if s.name == name {
			return true
		}
	}
	return false
}

// registered returns the plugins crishim counts as registered and
// connected, by pluginName, with their connection counts.
func (m metrics) registered() map[string]float64 {
	out := map[string]float64{}
	for _, s := range m {
		if s.name == metricRegistered && s.value != 0 {
			out[pluginName(s.labels["plugin"])] += s.value
		}
	}
	return out
}

// pluginName is a plugin label without NRI's index prefix ("10-bench-a" is
// "bench-a"): the benchmark compares by name, whether crishim labels by
// NRI's NN-name or by the registered name alone.
func pluginName(label string) string {
	if len(label) > 3 && label[2] == '-' && isDigit(label[0]) && isDigit(label[1]) {
		return label[3:]
	}
	return label
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
