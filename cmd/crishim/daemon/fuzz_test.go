package daemon

import (
	"os"
	"testing"
)

// FuzzConfig feeds arbitrary files to the config parser and validator: they
// may reject anything, never panic.
func FuzzConfig(f *testing.F) {
	for _, p := range []string{"../../../configs/crishim.yaml", "../../../configs/crishim-kata.yaml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("handlers:\n  - name: kata\n    overhead: {cpu: 250m}\nrouting:\n  rules:\n    - name: r\n      match: {namespaces: ['a*']}\n      handler: kata\n"))
	f.Add([]byte("images:\n  pulls: {mode: parallel, maxParallel: 3}\n  credentials:\n    policy: [{registries: ['*'], namespaces: []}]\n"))
	f.Add([]byte("listen: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := DefaultConfig()
		if err := parseConfig(data, cfg); err != nil {
			return
		}
		_ = cfg.Validate()
	})
}
