// Package config loads service configuration in layers — defaults < YAML file
// < environment < command-line flags — and validates the result.
//
// Each component owns a config struct with yaml tags and binds its fields to
// flags, with their defaults, in RegisterFlags (or RegisterFlagsWithPrefix for
// structs that are nested or reused), Loki style:
//
//	type KafkaConfig struct {
//		Brokers []string      `yaml:"brokers"`
//		Timeout time.Duration `yaml:"timeout"`
//	}
//
//	func (c *KafkaConfig) RegisterFlagsWithPrefix(prefix string, fs *flag.FlagSet) {
//		config.StringSliceVar(fs, &c.Brokers, prefix+"brokers", []string{"localhost:9092"}, "Kafka seed brokers, comma-separated.")
//		fs.DurationVar(&c.Timeout, prefix+"timeout", 10*time.Second, "Kafka request timeout.")
//	}
//
//	func (c *KafkaConfig) Validate() error {
//		if len(c.Brokers) == 0 {
//			return config.Field("brokers", config.ErrRequired)
//		}
//		return nil
//	}
//
// Registering the flags therefore applies the defaults; Load then layers the
// YAML file, the environment and the flags on top. time.Duration fields need
// no special type: yaml.v3 decodes "5s" into a time.Duration (and rejects a
// bare integer) and encodes it back as "5s".
//
// Nest component configs as struct values, not pointers: flags are bound to
// field addresses, and a YAML null would replace a pointer and orphan them.
//
// Nothing here keeps state between calls: there are no package-level flags and
// two configurations can be loaded in one process.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FlagRegisterer is a configuration that binds its fields, with their default
// values, to flags on fs. Its method must have a pointer receiver so the YAML
// file can be decoded into the same value.
type FlagRegisterer interface {
	RegisterFlags(fs *flag.FlagSet)
}

// Names of the flags Load adds next to the configuration's own.
const (
	FlagConfigFile  = "config.file"
	FlagConfigCheck = "config.check"
)

// Loaded describes how a configuration was loaded.
type Loaded struct {
	// ConfigFile is the YAML file that was read, "" when none.
	ConfigFile string
	// Check is true when -config.check was given: the caller should validate,
	// print Dump's output and exit instead of running.
	Check bool
}

// Load fills cfg from, in increasing precedence: the flag defaults registered
// by cfg.RegisterFlags, the YAML file named by -config.file (or the env var
// <PREFIX>_CONFIG_FILE), environment variables, and the flags in args
// (without the program name, i.e. os.Args[1:]).
//
// Every flag "a.b-c" can be set through the env var <PREFIX>_A_B_C (see
// EnvName); an empty env var counts as unset. Unknown YAML keys, unparsable
// values, positional arguments and secrets given on the command line are
// errors. With -h or -help Load returns an error matching flag.ErrHelp; print
// the flags with PrintUsage. Load does not call Validate.
func Load(cfg FlagRegisterer, args []string, getenv func(string) string, envPrefix string) (Loaded, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	fs, meta := newFlagSet(cfg)
	envNames, err := envNames(fs, envPrefix)
	if err != nil {
		return Loaded{}, err
	}

	// First pass: learn -config.file and find out which flags were given.
	if err := parseArgs(fs, args); err != nil {
		return Loaded{}, err
	}
	explicit := map[string]bool{}
	var errs []error
	fs.Visit(func(f *flag.Flag) {
		explicit[f.Name] = true
		if _, ok := f.Value.(*secretValue); ok {
			errs = append(errs, fmt.Errorf("flag -%s: %w; set %s or use -%s-file", f.Name, ErrSecretOnCommandLine, envNames[f.Name], f.Name))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return Loaded{}, err
	}

	loaded := Loaded{ConfigFile: meta.file}
	if !explicit[FlagConfigFile] {
		loaded.ConfigFile = getenv(envNames[FlagConfigFile])
	}
	if loaded.ConfigFile != "" {
		if err := decodeYAMLFile(loaded.ConfigFile, cfg); err != nil {
			return Loaded{}, err
		}
	}

	// Environment over YAML. VisitAll goes in lexical order, so "-x.password"
	// is applied before "-x.password-file": the file wins if both are set.
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == FlagConfigFile {
			return
		}
		name := envNames[f.Name]
		v := getenv(name)
		if v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			if _, secret := f.Value.(*secretValue); secret {
				v = Redacted
			}
			errs = append(errs, fmt.Errorf("env %s=%q (flag -%s): %w", name, v, f.Name, err))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return Loaded{}, err
	}

	// Second pass: flags given explicitly win over everything. flag.Value.Set
	// implementations used here must replace the value, not append to it.
	if err := parseArgs(fs, args); err != nil {
		return Loaded{}, err
	}
	loaded.Check = meta.check
	return loaded, nil
}

// ApplyDefaults sets cfg to its flag defaults, as if loaded without a file,
// env vars or flags; for tests and for components built without Load.
func ApplyDefaults(cfg FlagRegisterer) {
	newFlagSet(cfg)
}

// PrintUsage writes the flags of cfg, with their defaults and env var names,
// to w. It registers the flags again, which resets cfg to its defaults: call it
// only to answer -help.
func PrintUsage(w io.Writer, cfg FlagRegisterer, envPrefix string) {
	fs, _ := newFlagSet(cfg)
	names, _ := envNames(fs, envPrefix) // a collision is reported by Load
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage += " [env " + names[f.Name] + "]"
	})
	fs.SetOutput(w)
	fmt.Fprintf(w, "Flags (precedence: defaults < -%s YAML < env < flags):\n", FlagConfigFile)
	fs.PrintDefaults()
}

// EnvName returns the environment variable that sets flagName: the prefix and
// the flag name joined by "_", upper-cased, with "." and "-" replaced by "_".
// EnvName("AGENTAUDIT", "kafka.sasl-user") is "AGENTAUDIT_KAFKA_SASL_USER".
func EnvName(prefix, flagName string) string {
	name := strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(flagName))
	if prefix = strings.TrimSuffix(prefix, "_"); prefix != "" {
		name = strings.ToUpper(prefix) + "_" + name
	}
	return name
}

type metaFlags struct {
	file  string
	check bool
}

func newFlagSet(cfg FlagRegisterer) (*flag.FlagSet, *metaFlags) {
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	// Parse errors are returned, not printed: the caller reports them once.
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	meta := &metaFlags{}
	fs.StringVar(&meta.file, FlagConfigFile, "", "YAML configuration file; flags and env override it.")
	fs.BoolVar(&meta.check, FlagConfigCheck, false, "Load and validate the configuration, print it with secrets redacted, and exit.")
	return fs, meta
}

// envNames maps every flag to its env var and fails if two flags share one.
func envNames(fs *flag.FlagSet, prefix string) (map[string]string, error) {
	names := map[string]string{}
	owner := map[string]string{}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := EnvName(prefix, f.Name)
		if other, ok := owner[env]; ok {
			errs = append(errs, fmt.Errorf("flags -%s and -%s both map to env %s", other, f.Name, env))
		}
		owner[env] = f.Name
		names[f.Name] = env
	})
	return names, errors.Join(errs...)
}

func parseArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("parse flags: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("parse flags: unexpected argument %q (flags are -name=value)", fs.Arg(0))
	}
	return nil
}

// decodeYAMLFile decodes path over cfg. Keys that match no field are errors;
// yaml.v3 names the key, its line and the Go type it was looked up in.
func decodeYAMLFile(path string, cfg any) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open config file: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) { // empty file: nothing to apply
			return nil
		}
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: want exactly one YAML document", path)
	}
	return nil
}
