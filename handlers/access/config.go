package access

import (
	"fmt"
	"path"
)

// DefaultStateDir is where the record is kept when images.access.stateDir
// is not set.
const DefaultStateDir = "/var/lib/crishim"

// Unknown-image modes.
const (
	// UnknownAllow lets images without a record run, with a log line and a
	// metric: images pulled before crishim ran keep working.
	UnknownAllow = "allow"
	// UnknownDeny refuses images without a record whose registry the policy
	// restricts (or whose registry cannot be told), until a pull through
	// crishim proves the namespace's access.
	UnknownDeny = "deny"
)

// Config is images.access.
type Config struct {
	// Enforce refuses CreateContainer for images the pod's namespace has
	// not proven access to (default true). false keeps recording only, so
	// that enforcement can be turned on by a reload with the record full.
	Enforce *bool `json:"enforce,omitempty"`
	// UnknownImages is "allow" (default) or "deny": what happens to images
	// crishim has no record of.
	UnknownImages string `json:"unknownImages,omitempty"`
	// StateDir holds the record (image-access.json); created 0700.
	StateDir string `json:"stateDir,omitempty"`
}

// Enforcing reports whether CreateContainer is checked.
func (c *Config) Enforcing() bool { return c.Enforce == nil || *c.Enforce }

// DenyUnknown reports whether images without a record are refused.
func (c *Config) DenyUnknown() bool { return c.UnknownImages == UnknownDeny }

// Dir returns the state directory.
func (c *Config) Dir() string {
	if c.StateDir == "" {
		return DefaultStateDir
	}
	return c.StateDir
}

// Validate returns every problem of images.access.
func (c *Config) Validate() []string {
	var problems []string
	switch c.UnknownImages {
	case "", UnknownAllow, UnknownDeny:
	default:
		problems = append(problems, fmt.Sprintf("images.access.unknownImages: %q is not allow or deny", c.UnknownImages))
	}
	if c.StateDir != "" && !path.IsAbs(c.StateDir) {
		problems = append(problems, fmt.Sprintf("images.access.stateDir: %q must be an absolute directory", c.StateDir))
	}
	return problems
}
