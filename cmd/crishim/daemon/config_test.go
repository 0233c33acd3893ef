package daemon

import (
	"os"
	"strings"
	"testing"

	"github.com/crishim/crishim/handlers/credentials"
	"github.com/crishim/crishim/test/daemontest"
)

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		desc string
		body string
		want []string // every one must appear in the error
	}{
		{"unknown key", "listen:\n  path: /run/x.sock\n  mdoe: \"0660\"\n", []string{"listen.mdoe: unknown key"}},
		{"unknown top-level key", "runtimeEndpont: unix:///run/c.sock\n", []string{"runtimeEndpont: unknown key"}},
		{"bad type", "listen:\n  path: [1, 2]\n", []string{"listen.path: want a string, got a list"}},
		{"bad quantity", "maxMessageSize: lots\n", []string{"maxMessageSize"}},
		{"bad duration", "shutdownGracePeriod: soon\n", []string{"shutdownGracePeriod"}},
		{"not yaml", "listen: [\n", []string{"not valid YAML"}},
		{"two problems at once", "foo: 1\nlisten:\n  mode: 660\n", []string{"foo: unknown key", "listen.mode: want a string, got the number 660"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			path := daemontest.WriteConfig(t, tc.body)
			_, err := LoadConfig(path, false)
			if err == nil {
				t.Fatal("loaded an invalid file")
			}
			for _, w := range append(tc.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestWorldWritableConfigRefused(t *testing.T) {
	path := daemontest.WriteConfig(t, "listen:\n  path: /run/x.sock\n")
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path, false)
	if err == nil || !strings.Contains(err.Error(), "world-writable") || !strings.Contains(err.Error(), path) {
		t.Errorf("got %v, want a refusal naming the file", err)
	}
}

func TestValidateProblems(t *testing.T) {
	tests := []struct {
		desc string
		body string
		want []string
	}{
		{"relative socket path", "listen:\n  path: crishim.sock\n", []string{"listen.path", "absolute"}},
		{"socket path too long", "listen:\n  path: /" + strings.Repeat("a", 120) + "\n", []string{"listen.path", "107-byte"}},
		{"world-writable socket", "listen:\n  path: /run/x.sock\n  mode: \"0666\"\n", []string{"listen.mode", "every local user"}},
		{"mode not octal", "listen:\n  path: /run/x.sock\n  mode: \"rw\"\n", []string{"listen.mode", "octal"}},
		{"tcp endpoint", "runtimeEndpoint: tcp://10.0.0.1:1\n", []string{"runtimeEndpoint", "only unix://"}},
		{"relative image endpoint", "imageEndpoint: unix://x.sock\n", []string{"imageEndpoint"}},
		{"endpoint is our own socket", "listen:\n  path: /run/x.sock\nruntimeEndpoint: unix:///run/x.sock\n", []string{"runtimeEndpoint", "own listen socket"}},
		{"message limit below the kubelet's", "maxMessageSize: 4Mi\n", []string{"maxMessageSize", "16Mi"}},
		{"negative grace", "shutdownGracePeriod: -1s\n", []string{"shutdownGracePeriod"}},
		{"log level", "log:\n  level: loud\n", []string{"log.level", `"loud"`}},
		{"log format", "log:\n  format: xml\n", []string{"log.format"}},
		{"pull key annotations", "images:\n  pulls:\n    mode: serial\n    keyAnnotations: [\"[\"]\n", []string{"images.pulls.keyAnnotations[0]", "not a valid glob"}},
		{"access without credentials", "images:\n  access: {}\n", []string{"images.access: needs images.credentials"}},
		{"access mode", "images:\n  access:\n    unknownImages: maybe\n", []string{"images.access.unknownImages", "allow or deny"}},
		{"access state dir", "images:\n  access:\n    stateDir: rel\n", []string{"images.access.stateDir", "absolute"}},
		{"metrics address", "metrics:\n  address: nohost\n", []string{"metrics.address"}},
		{"metrics port", "metrics:\n  address: 127.0.0.1:99999\n", []string{"metrics.address", "port"}},
		{"registry label bound", "metrics:\n  maxRegistryLabels: 20000\n", []string{"metrics.maxRegistryLabels", "1 to 10000"}},
		{"negative registry label bound", "metrics:\n  maxRegistryLabels: -1\n", []string{"metrics.maxRegistryLabels"}},
		{"every problem at once", "listen:\n  path: x\nlog:\n  level: loud\n  format: xml\n", []string{"listen.path", "log.level", "log.format"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			cfg, err := LoadConfig(daemontest.WriteConfig(t, tc.body), false)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(cfg.Validate(), "\n")
			if got == "" {
				t.Fatal("no problems found")
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("problems %q lack %q", got, w)
				}
			}
		})
	}
}

func TestShippedCredentialProviderConfigLoads(t *testing.T) {
	cfg, err := credentials.LoadPluginConfig("../../../configs/credential-provider.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Providers) != 1 || cfg.Providers[0].Name != "ecr-credential-provider" {
		t.Errorf("providers %+v", cfg.Providers)
	}
}

func TestRoutingConfigProblemsNameTheRule(t *testing.T) {
	body := "handlers:\n  - name: runc\n    default: true\n  - name: kata\n    default: true\n    overhead:\n      cpu: lots\nrouting:\n  rules:\n    - name: to-fc\n      handler: fc\n"
	_, err := LoadConfig(daemontest.WriteConfig(t, body), false)
	if err == nil || !strings.Contains(err.Error(), "handlers[1].overhead.cpu") {
		t.Fatalf("bad quantity: got %v", err)
	}
	body = strings.Replace(body, "cpu: lots", "cpu: 250m", 1)
	cfg, err := LoadConfig(daemontest.WriteConfig(t, body), false)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(cfg.Validate(), "\n")
	for _, want := range []string{"2 handlers are marked default", `routing.rules[0] ("to-fc"): handler "fc" is not in handlers`} {
		if !strings.Contains(got, want) {
			t.Errorf("problems %q lack %q", got, want)
		}
	}
}

func TestConnectionLimitProblems(t *testing.T) {
	tests := []struct {
		body string
		want []string // nil: valid
	}{
		{"", nil},
		{"listen:\n  maxConnections: 16\n  maxConcurrentStreams: 100\n", nil},
		{"listen:\n  maxConnections: 1048576\n  maxConcurrentStreams: 1048576\n", nil},
		{"listen:\n  maxConnections: 0\n", []string{"listen.maxConnections", "0 is below 16"}},
		{"listen:\n  maxConnections: 2\n", []string{"listen.maxConnections", "kubelet"}},
		{"listen:\n  maxConnections: 2000000\n", []string{"listen.maxConnections", "above 1048576"}},
		{"listen:\n  maxConcurrentStreams: 10\n", []string{"listen.maxConcurrentStreams", "below 100"}},
		{"listen:\n  maxConcurrentStreams: -1\n", []string{"listen.maxConcurrentStreams", "-1 is below 100"}},
		{"listen:\n  maxConcurrentStreams: 5000000000\n", []string{"listen.maxConcurrentStreams", "above 1048576"}},
		{"listen:\n  maxConnections: 1\n  maxConcurrentStreams: 1\n", []string{"listen.maxConnections", "listen.maxConcurrentStreams"}},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.body, "\n", " "), func(t *testing.T) {
			cfg, err := LoadConfig(daemontest.WriteConfig(t, tc.body), false)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(cfg.Validate(), "\n")
			if tc.want == nil && got != "" {
				t.Errorf("problems %q, want none", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("problems %q lack %q", got, w)
				}
			}
		})
	}
	// The reference config documents the defaults.
	ref, err := LoadConfig("../../../configs/crishim.yaml", false)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Listen != DefaultConfig().Listen {
		t.Errorf("configs/crishim.yaml listen %+v, defaults %+v", ref.Listen, DefaultConfig().Listen)
	}
	// The defaults reach the server.
	sc := DefaultConfig().shimConfig()
	if sc.MaxConnections != defaultMaxConnections || sc.MaxConcurrentStreams != defaultMaxConcurrentStreams {
		t.Errorf("server config %+v lacks the default limits", sc)
	}
}

// TestDefaultsReachTheServer: a file that sets nothing leaves the defaults,
// and they reach the server and the shutdown (crishim's TestDefaultsAndFlags
// checks the same through the flags).
func TestDefaultsReachTheServer(t *testing.T) {
	cfg, err := LoadConfig(daemontest.WriteConfig(t, ""), false)
	if err != nil {
		t.Fatal(err)
	}
	if problems := cfg.Validate(); len(problems) > 0 {
		t.Fatalf("the defaults are invalid: %v", problems)
	}
	if cfg.metricsAddress() != "127.0.0.1:9810" {
		t.Errorf("metrics address %q", cfg.metricsAddress())
	}
	if cfg.Metrics.Pprof {
		t.Error("pprof is on by default")
	}
	if cfg.shimConfig().MaxMessageSize != 16<<20 || cfg.gracePeriod().Seconds() != 30 {
		t.Errorf("defaults lost: %+v, grace period %v", cfg.shimConfig(), cfg.gracePeriod())
	}
	// --metrics-address "" disables the listener.
	none := ""
	cfg.Metrics.Address = &none
	if cfg.metricsAddress() != "" {
		t.Errorf("metrics address %q, want none", cfg.metricsAddress())
	}
}
