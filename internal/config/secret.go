package config

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// Redacted is what a non-empty Secret prints as.
const Redacted = "[REDACTED]"

// ErrSecretOnCommandLine is returned by Load when a secret is passed as a
// flag: command lines are visible to every user of the machine (ps,
// /proc/*/cmdline). Secrets come from env vars or files.
var ErrSecretOnCommandLine = errors.New("secrets must not be given on the command line")

// Secret is a string that never prints: String, Format (every fmt verb),
// GoString, LogValue (slog), MarshalJSON, MarshalYAML and MarshalText all
// render a set secret as "[REDACTED]" and an empty one as "". Reveal returns
// the value for the one place that needs it.
type Secret string

var (
	_ fmt.Formatter                              = Secret("")
	_ fmt.GoStringer                             = Secret("")
	_ slog.LogValuer                             = Secret("")
	_ json.Marshaler                             = Secret("")
	_ flag.Value                                 = (*secretValue)(nil)
	_ flag.Value                                 = (*secretFileValue)(nil)
	_ fmt.Stringer                               = Secret("")
	_ interface{ MarshalText() ([]byte, error) } = Secret("")
)

// Reveal returns the secret itself. Call it only where the secret is used
// (a client's password field), never to log or print.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) redacted() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// String returns "[REDACTED]", or "" for an empty secret.
func (s Secret) String() string { return s.redacted() }

// GoString makes %#v redact too.
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.redacted()) }

// Format makes every fmt verb (%d and %x included) print the redacted form.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, s.GoString())
		return
	}
	fmt.Fprint(f, s.redacted())
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.redacted()) }

// MarshalJSON implements json.Marshaler; slog's JSON handler uses it for a
// Secret nested in a logged struct.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.redacted()) }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.redacted()), nil }

// MarshalYAML implements yaml.Marshaler, so Dump shows whether a secret is set
// but not what it is. Decoding a Secret from YAML is plain string decoding.
func (s Secret) MarshalYAML() (any, error) { return s.redacted(), nil }

// SecretVar registers two flags for *p, which starts empty:
//
//   - name: the secret itself, settable only through its env var (see
//     EnvName); Load rejects it on the command line with ErrSecretOnCommandLine;
//   - name-file: a file whose content (without trailing newlines) is the secret,
//     e.g. a mounted Kubernetes or Docker secret; flag or env.
//
// If both are set in the same layer, the file wins.
func SecretVar(fs *flag.FlagSet, p *Secret, name, usage string) {
	*p = ""
	fs.Var((*secretValue)(p), name, usage+" Env var only, never a flag; or see -"+name+"-file.")
	fs.Var(&secretFileValue{secret: p}, name+"-file", "File holding "+name+" (trailing newlines are trimmed).")
}

// secretValue sets a Secret; Load refuses it on the command line.
type secretValue Secret

func (v *secretValue) String() string {
	if v == nil {
		return ""
	}
	return Secret(*v).redacted()
}

func (v *secretValue) Set(s string) error {
	*v = secretValue(s)
	return nil
}

// secretFileValue reads the secret from the named file when set.
type secretFileValue struct {
	secret *Secret
	path   string
}

func (v *secretFileValue) String() string {
	if v == nil {
		return ""
	}
	return v.path
}

func (v *secretFileValue) Set(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read secret file: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return fmt.Errorf("secret file %s is empty", path)
	}
	v.path = path
	*v.secret = Secret(s)
	return nil
}
