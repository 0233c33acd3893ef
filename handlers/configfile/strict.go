// Package configfile is how crishim reads the files it is configured by: its
// own YAML and the kubelet's credential-provider config and docker config
// files. Check reports every unknown key and every value of the wrong type by
// its dotted path ("listen.mode", "providers[1].matchImages[0]"), all at once,
// so an operator fixes a file in one go instead of one error per restart;
// CheckNotWorldWritable refuses files any local user could rewrite; StampOf
// tells whether a file changed, for reloads.
package configfile

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Problem is one thing wrong in a document.
type Problem struct {
	// Path locates it: "listen.mode", "handlers[1].overhead.cpu"; empty for
	// the document as a whole.
	Path string
	// Msg says what is wrong: "unknown key", "want a string, got a list".
	Msg string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Msg
	}
	return p.Path + ": " + p.Msg
}

// Option changes how Check reports problems.
type Option func(*checker)

// Redact marks the paths whose values (and key names) may be secrets, such
// as a credential provider's env and args: a problem there names the path
// of the entry and the reason, never what was written. A document that does
// not parse at all is then reported by line number only, since a parser's
// message can quote the text around the error.
func Redact(secret func(path string) bool) Option {
	return func(c *checker) { c.secret = secret }
}

type checker struct {
	secret   func(path string) bool
	problems []Problem
}

func (c *checker) redacted(path string) bool { return c.secret != nil && c.secret(path) }

// Check walks a YAML (or JSON) document against the Go type it will be
// decoded into and returns every unknown key and every value that does not
// decode into its field's type. A document without problems decodes with
// sigs.k8s.io/yaml's strict decoder.
func Check(data []byte, into any, opts ...Option) []Problem {
	var c checker
	for _, o := range opts {
		o(&c)
	}
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		if c.secret != nil {
			return []Problem{{Msg: YAMLErrorLine(err)}}
		}
		return []Problem{{Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")}}
	}
	var doc any
	if err := json.Unmarshal(j, &doc); err != nil {
		return []Problem{{Msg: "not valid YAML or JSON"}}
	}
	c.walk("", doc, reflect.TypeOf(into))
	return c.problems
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// YAMLErrorLine describes a YAML parse error by its line number only: the
// parser's message may quote the text it stopped at.
func YAMLErrorLine(err error) string {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		return "not valid YAML (line " + m[1] + ")"
	}
	return "not valid YAML"
}

// Strings formats problems one per entry.
func Strings(problems []Problem) []string {
	out := make([]string, len(problems))
	for i, p := range problems {
		out[i] = p.String()
	}
	return out
}

var (
	jsonUnmarshaler = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()
	textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

func (c *checker) add(path, msg string) { c.problems = append(c.problems, Problem{path, msg}) }

func (c *checker) walk(path string, v any, t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return // null leaves the default
	}
	custom := reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler)
	switch {
	case t.Kind() == reflect.Struct && !custom:
		m, ok := v.(map[string]any)
		if !ok {
			c.add(path, "want a mapping of keys, got "+c.kindOf(path, v))
			return
		}
		fields := JSONFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			switch {
			case !ok && c.redacted(join(path, k)):
				c.add(path, "unknown key (not shown: it may be a secret)")
			case !ok:
				c.add(join(path, k), "unknown key")
			default:
				c.walk(join(path, k), m[k], ft)
			}
		}
	case t.Kind() == reflect.Slice && !custom && t.Elem().Kind() != reflect.Uint8:
		l, ok := v.([]any)
		if !ok {
			c.add(path, "want a list, got "+c.kindOf(path, v))
			return
		}
		for i, e := range l {
			c.walk(fmt.Sprintf("%s[%d]", path, i), e, t.Elem())
		}
	case t.Kind() == reflect.Map && !custom:
		m, ok := v.(map[string]any)
		if !ok {
			c.add(path, "want a mapping, got "+c.kindOf(path, v))
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			c.walk(join(path, k), m[k], t.Elem())
		}
	default:
		b, _ := json.Marshal(v)
		if err := json.Unmarshal(b, reflect.New(t).Interface()); err != nil {
			c.add(path, c.leafError(path, err, v))
		}
	}
}

// JSONFields maps the JSON names of t's fields, inlined embedded structs
// included, to their types.
func JSONFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			for k, v := range JSONFields(ft) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func (c *checker) leafError(path string, err error, v any) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return fmt.Sprintf("want %s, got %s", describeType(ute.Type), c.kindOf(path, v))
	}
	if c.redacted(path) {
		return "not a valid value (not shown: it may be a secret)"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// kindOf describes a value, quoting it unless its path is redacted.
func (c *checker) kindOf(path string, v any) string {
	if !c.redacted(path) {
		return kindOf(v)
	}
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string (not shown: it may be a secret)"
	case float64:
		return "a number (not shown: it may be a secret)"
	case bool:
		return "true or false"
	}
	return "another kind of value"
}

func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a " + t.String()
}

func kindOf(v any) string {
	switch v := v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return fmt.Sprintf("the string %q", v)
	case float64:
		return fmt.Sprintf("the number %v", v)
	case bool:
		return fmt.Sprintf("%v", v)
	}
	return fmt.Sprintf("%T", v)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
