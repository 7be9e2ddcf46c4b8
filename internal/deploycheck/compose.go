package deploycheck

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Compose is the part of a docker-compose file the checks read.
type Compose struct {
	Name     string                    `yaml:"name"`
	Services map[string]ComposeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	// Extensions are the top-level x-* fields (anchors for shared settings).
	Extensions map[string]any `yaml:",inline"`
}

// ComposeService is one service of a docker-compose file.
type ComposeService struct {
	Image       string               `yaml:"image"`
	Build       *ComposeBuild        `yaml:"build"`
	Entrypoint  []string             `yaml:"entrypoint"`
	Command     StringOrList         `yaml:"command"`
	Environment map[string]string    `yaml:"environment"`
	Ports       []string             `yaml:"ports"`
	Expose      []string             `yaml:"expose"`
	Volumes     []string             `yaml:"volumes"`
	DependsOn   map[string]DependsOn `yaml:"depends_on"`
	Healthcheck *Healthcheck         `yaml:"healthcheck"`
	Restart     string               `yaml:"restart"`
	// Not checked, listed so that unknown keys can be rejected.
	Ulimits         map[string]any `yaml:"ulimits"`
	StopGracePeriod string         `yaml:"stop_grace_period"`
}

// ComposeBuild is a service's build section.
type ComposeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

// DependsOn is the long form of a depends_on entry.
type DependsOn struct {
	Condition string `yaml:"condition"`
}

// Healthcheck is a service's healthcheck.
type Healthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

// StringOrList is a compose field that may be a string or a list.
type StringOrList []string

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (s *StringOrList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = []string{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

// LoadCompose parses a docker-compose file. Unknown keys are errors, so a
// misspelt key (which docker compose would reject) fails here too;
// x-* extension fields at the top level are allowed.
func LoadCompose(file string) (*Compose, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var c Compose
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decode %s: %w", file, err)
	}
	for k := range c.Extensions {
		if !strings.HasPrefix(k, "x-") {
			return nil, fmt.Errorf("%s: unknown top-level key %q", file, k)
		}
	}
	return &c, nil
}

// interpolationRE matches ${VAR}, ${VAR:-default} and ${VAR-default}.
var interpolationRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

// Interpolate resolves ${VAR:-default} as docker compose does with an empty
// environment (the defaults a fresh checkout gets) and $$ as "$".
func Interpolate(s string) string {
	const dollar = "\x00"
	s = strings.ReplaceAll(s, "$$", dollar)
	s = interpolationRE.ReplaceAllString(s, "$2")
	return strings.ReplaceAll(s, dollar, "$")
}

// ComposeVolume is one entry of a service's volumes: a bind mount (Source
// is a path) or a named volume.
type ComposeVolume struct {
	Source, Target string
	Bind, ReadOnly bool
}

// ParseVolume parses "source:target[:ro]".
func ParseVolume(v string) (ComposeVolume, error) {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return ComposeVolume{}, fmt.Errorf("volume %q: want source:target[:mode]", v)
	}
	cv := ComposeVolume{Source: parts[0], Target: parts[1]}
	cv.Bind = strings.HasPrefix(cv.Source, ".") || strings.HasPrefix(cv.Source, "/")
	if len(parts) == 3 {
		if parts[2] != "ro" && parts[2] != "rw" {
			return ComposeVolume{}, fmt.Errorf("volume %q: mode %q", v, parts[2])
		}
		cv.ReadOnly = parts[2] == "ro"
	}
	return cv, nil
}

// DockerCopy is one COPY instruction of a Dockerfile.
type DockerCopy struct {
	Line    int
	From    string // --from stage, "" for the build context
	Sources []string
	Dest    string
}

// Dockerfile is what the checks read of a Dockerfile.
type Dockerfile struct {
	Stages []string // FROM images in order
	Copies []DockerCopy
	Runs   []string // RUN instructions, continuations joined
	User   string   // last USER
}

// LoadDockerfile parses the FROM, COPY and USER instructions (with line
// continuations) of a Dockerfile.
func LoadDockerfile(file string) (*Dockerfile, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var df Dockerfile
	sc := bufio.NewScanner(f)
	var cur strings.Builder
	line, start := 0, 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 {
			if t == "" || strings.HasPrefix(t, "#") {
				continue
			}
			start = line
		}
		if strings.HasSuffix(t, `\`) {
			cur.WriteString(strings.TrimSuffix(t, `\`) + " ")
			continue
		}
		cur.WriteString(t)
		if err := df.add(start, cur.String()); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, start, err)
		}
		cur.Reset()
	}
	return &df, sc.Err()
}

func (df *Dockerfile) add(line int, instr string) error {
	fields := strings.Fields(instr)
	switch strings.ToUpper(fields[0]) {
	case "FROM":
		if len(fields) < 2 {
			return fmt.Errorf("FROM without image")
		}
		df.Stages = append(df.Stages, fields[1])
	case "RUN":
		df.Runs = append(df.Runs, strings.TrimSpace(instr[len(fields[0]):]))
	case "USER":
		if len(fields) != 2 {
			return fmt.Errorf("USER wants one argument")
		}
		df.User = fields[1]
	case "COPY", "ADD":
		c := DockerCopy{Line: line}
		var args []string
		for _, a := range fields[1:] {
			if v, ok := strings.CutPrefix(a, "--from="); ok {
				c.From = v
			} else if !strings.HasPrefix(a, "--") {
				args = append(args, a)
			}
		}
		if len(args) < 2 {
			return fmt.Errorf("%s wants sources and a destination", fields[0])
		}
		c.Sources, c.Dest = args[:len(args)-1], args[len(args)-1]
		df.Copies = append(df.Copies, c)
	}
	return nil
}

// DockerIgnore holds the patterns of a .dockerignore file.
type DockerIgnore struct{ patterns []string }

// LoadDockerIgnore reads a .dockerignore file (a missing file ignores
// nothing).
func LoadDockerIgnore(file string) (*DockerIgnore, error) {
	b, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return &DockerIgnore{}, nil
	}
	if err != nil {
		return nil, err
	}
	var di DockerIgnore
	for l := range strings.SplitSeq(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			return nil, fmt.Errorf("%s: exceptions (%q) are not supported by this check", file, l)
		}
		di.patterns = append(di.patterns, path.Clean(strings.TrimPrefix(l, "/")))
	}
	return &di, nil
}

// Excludes reports the pattern that excludes the context path p (slash
// separated, relative to the context), matching p and each of its parent
// directories as Docker does; "**/" matches any number of directories.
func (di *DockerIgnore) Excludes(p string) (string, bool) {
	p = path.Clean(filepath.ToSlash(p))
	for _, pat := range di.patterns {
		for q := p; q != "." && q != "/"; q = path.Dir(q) {
			if matchIgnore(pat, q) {
				return pat, true
			}
		}
	}
	return "", false
}

func matchIgnore(pat, p string) bool {
	if rest, ok := strings.CutPrefix(pat, "**/"); ok {
		segs := strings.Split(p, "/")
		for i := range segs {
			if matchIgnore(rest, strings.Join(segs[i:], "/")) {
				return true
			}
		}
		return false
	}
	ok, err := path.Match(pat, p)
	return err == nil && ok
}
