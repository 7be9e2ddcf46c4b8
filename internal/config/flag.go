package config

import (
	"flag"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// StringSlice is a list of strings that is set from a flag or env var as one
// comma-separated value ("a, b,c") and from YAML as a list (or, for
// convenience, one comma-separated string). Set replaces the whole list, so a
// flag overrides the env var and the YAML file instead of appending to them.
type StringSlice []string

var (
	_ flag.Value       = (*StringSlice)(nil)
	_ yaml.Unmarshaler = (*StringSlice)(nil)
)

// StringSliceVar binds *p to the flag name with the default value, like
// flag.StringVar. The default is copied, so *p never aliases it.
func StringSliceVar(fs *flag.FlagSet, p *[]string, name string, value []string, usage string) {
	*p = append([]string(nil), value...)
	fs.Var((*StringSlice)(p), name, usage)
}

// String returns the list comma-separated.
func (s *StringSlice) String() string {
	if s == nil {
		return ""
	}
	return strings.Join(*s, ",")
}

// Set replaces the list with the comma-separated items of v; blanks around
// items are trimmed and empty items dropped, so "" sets an empty list.
func (s *StringSlice) Set(v string) error {
	*s = splitList(v)
	return nil
}

// UnmarshalYAML accepts a list of strings or a comma-separated string.
func (s *StringSlice) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*s = nil
			return nil
		}
		*s = splitList(n.Value)
		return nil
	case yaml.SequenceNode:
		var items []string
		if err := n.Decode(&items); err != nil {
			return err
		}
		*s = items
		return nil
	default:
		return fmt.Errorf("line %d: want a list of strings or a comma-separated string", n.Line)
	}
}

func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
