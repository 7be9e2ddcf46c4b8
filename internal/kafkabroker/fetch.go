package kafkabroker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// This file is the single source of truth for which Apache Kafka is run and
// how it is assembled; scripts/kafka-broker.sh calls it through
// internal/kafkabroker/cmd/kafkabroker.

// DefaultKafkaVersion is the Apache Kafka release StartApache runs by
// default: the newest 4.x on Maven Central when this was written (4.0.0 …
// 4.4.0 all resolve).
const DefaultKafkaVersion = "4.4.0"

const (
	// Logging: kafka_2.13 declares slf4j-api 1.7 and log4j2 core but no
	// binding between them, so without these the broker logs nothing and a
	// failed start cannot be diagnosed. Declared directly, they win over the
	// transitive versions (the Kafka 4.4.0 distribution ships the same).
	slf4jVersion = "2.0.17"
	log4jVersion = "2.25.5"

	// Pinned so the fetch does not depend on Maven's default plugin version.
	dependencyPluginVersion = "3.8.1"

	manifestName   = "libs.sha256"
	manifestHeader = "# agentaudit kafka libs v1"
)

// Artifact is a Maven coordinate.
type Artifact struct{ GroupID, ArtifactID, Version string }

func (a Artifact) String() string { return a.GroupID + ":" + a.ArtifactID + ":" + a.Version }

// Artifacts lists the Maven artifacts whose runtime dependency closure is the
// classpath of a KRaft broker of the given Kafka version. kafka_2.13 pulls in
// kafka-server, kafka-metadata, kafka-raft, kafka-storage, the coordinators,
// kafka-clients and Scala; kafka.tools.StorageTool (storage format) is in
// kafka_2.13 itself, so kafka-tools is not needed.
func Artifacts(kafkaVersion string) []Artifact {
	return []Artifact{
		{"org.apache.kafka", "kafka_2.13", kafkaVersion},
		{"org.slf4j", "slf4j-api", slf4jVersion},
		{"org.apache.logging.log4j", "log4j-api", log4jVersion},
		{"org.apache.logging.log4j", "log4j-core", log4jVersion},
		{"org.apache.logging.log4j", "log4j-slf4j2-impl", log4jVersion},
	}
}

// FetchOptions configures FetchApache.
type FetchOptions struct {
	// Version of Apache Kafka (default DefaultKafkaVersion).
	Version string
	// CacheDir is the cache root (default $AGENTAUDIT_CACHE, else
	// <user cache dir>/agentaudit, i.e. ~/.cache/agentaudit on Linux). The
	// jars go to <CacheDir>/kafka-<Version>/libs.
	CacheDir string
	// Mvn is the Maven executable (default "mvn" on PATH).
	Mvn string
	// Logger; nil discards.
	Logger *slog.Logger
}

func (o *FetchOptions) setDefaults() error {
	if o.Version == "" {
		o.Version = DefaultKafkaVersion
	}
	if err := validVersion(o.Version); err != nil {
		return err
	}
	if o.CacheDir == "" {
		dir, err := DefaultCacheDir()
		if err != nil {
			return err
		}
		o.CacheDir = dir
	}
	if o.Mvn == "" {
		o.Mvn = "mvn"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// DefaultCacheDir returns $AGENTAUDIT_CACHE, else <user cache
// dir>/agentaudit.
func DefaultCacheDir() (string, error) {
	if dir := os.Getenv("AGENTAUDIT_CACHE"); dir != "" {
		return dir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("default cache dir: %w (set AGENTAUDIT_CACHE)", err)
	}
	return filepath.Join(base, "agentaudit"), nil
}

// validVersion rejects anything that is not a plain release string: the
// version ends up in a path and in a generated pom.
func validVersion(v string) error {
	if v == "" || v[0] < '0' || v[0] > '9' {
		return fmt.Errorf("invalid kafka version %q", v)
	}
	for _, r := range v {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '.' || r == '-') {
			return fmt.Errorf("invalid kafka version %q", v)
		}
	}
	return nil
}

// FetchApache makes sure the jars of the given Kafka version are in the cache
// and returns their directory. A cache entry is trusted only if its manifest
// (written last, after a successful fetch) matches the current artifact list
// and the sha256 of every jar; otherwise Maven is run again. Concurrent
// callers (several test binaries) serialise on a lock file.
func FetchApache(ctx context.Context, opts FetchOptions) (string, error) {
	if err := opts.setDefaults(); err != nil {
		return "", fmt.Errorf("fetch kafka: %w", err)
	}
	dir := filepath.Join(opts.CacheDir, "kafka-"+opts.Version)
	libs := filepath.Join(dir, "libs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("fetch kafka %s: %w", opts.Version, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return "", fmt.Errorf("fetch kafka %s: lock cache: %w", opts.Version, err)
	}
	defer unlock()

	pom := generatePOM(opts.Version)
	pomSum := sha256Hex(pom)
	err = verifyManifest(dir, pomSum)
	if err == nil {
		return libs, nil
	}
	opts.Logger.Info("fetching kafka jars with maven", slog.String("version", opts.Version),
		slog.String("dir", libs), slog.String("reason", err.Error()))
	start := time.Now()

	// Replace the entry: manifest first, so a crash half-way leaves an entry
	// that fails verification rather than one that passes.
	if err := os.Remove(filepath.Join(dir, manifestName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("fetch kafka %s: %w", opts.Version, err)
	}
	tmp, err := os.MkdirTemp(dir, "fetch-")
	if err != nil {
		return "", fmt.Errorf("fetch kafka %s: %w", opts.Version, err)
	}
	defer os.RemoveAll(tmp)
	if err := runMaven(ctx, opts.Mvn, tmp, pom); err != nil {
		return "", fmt.Errorf("fetch kafka %s: %w", opts.Version, err)
	}
	want := filepath.Join(tmp, "libs", "kafka_2.13-"+opts.Version+".jar")
	if _, err := os.Stat(want); err != nil {
		return "", fmt.Errorf("fetch kafka %s: maven succeeded but %w", opts.Version, err)
	}
	if err := os.RemoveAll(libs); err != nil {
		return "", fmt.Errorf("fetch kafka %s: %w", opts.Version, err)
	}
	if err := os.Rename(filepath.Join(tmp, "libs"), libs); err != nil {
		return "", fmt.Errorf("fetch kafka %s: %w", opts.Version, err)
	}
	if err := writeManifest(dir, pomSum); err != nil {
		return "", fmt.Errorf("fetch kafka %s: %w", opts.Version, err)
	}
	opts.Logger.Info("fetched kafka jars", slog.String("version", opts.Version),
		slog.String("dir", libs), slog.Duration("took", time.Since(start)))
	return libs, nil
}

// generatePOM returns a throwaway pom whose dependencies are Artifacts.
func generatePOM(kafkaVersion string) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by agentaudit internal/kafkabroker; used once to resolve jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.agentaudit.fetch</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
`)
	for _, a := range Artifacts(kafkaVersion) {
		fmt.Fprintf(&b, "    <dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version></dependency>\n",
			a.GroupID, a.ArtifactID, a.Version)
	}
	b.WriteString("  </dependencies>\n</project>\n")
	return b.Bytes()
}

// runMaven copies the runtime dependency closure of pom into dir/libs.
func runMaven(ctx context.Context, mvn, dir string, pom []byte) error {
	pomPath := filepath.Join(dir, "pom.xml")
	if err := os.WriteFile(pomPath, pom, 0o644); err != nil {
		return err
	}
	args := []string{
		"-B", "-q", "-f", pomPath,
		"org.apache.maven.plugins:maven-dependency-plugin:" + dependencyPluginVersion + ":copy-dependencies",
		"-DincludeScope=runtime",
		"-DoutputDirectory=" + filepath.Join(dir, "libs"),
	}
	cmd := exec.CommandContext(ctx, mvn, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", mvn, strings.Join(args, " "), err, tail(out.String(), 40))
	}
	return nil
}

// writeManifest records the pom checksum and the sha256 of every jar in
// dir/libs, via a temp file and rename so readers never see half of it.
func writeManifest(dir, pomSum string) error {
	jars, err := listJars(filepath.Join(dir, "libs"))
	if err != nil {
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n# pom %s\n", manifestHeader, pomSum)
	for _, j := range jars {
		sum, err := fileSHA256(filepath.Join(dir, "libs", j))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, j) // sha256sum(1) format
	}
	tmp := filepath.Join(dir, manifestName+".tmp")
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, manifestName))
}

// verifyManifest checks that dir/libs holds exactly the jars of the manifest,
// with matching checksums, fetched for a pom with checksum pomSum.
func verifyManifest(dir, pomSum string) error {
	f, err := os.Open(filepath.Join(dir, manifestName))
	if err != nil {
		return err
	}
	defer f.Close()
	want := make(map[string]string)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case n == 1:
			if line != manifestHeader {
				return fmt.Errorf("manifest: unknown header %q", line)
			}
		case n == 2:
			if line != "# pom "+pomSum {
				return errors.New("manifest: artifact list changed")
			}
		default:
			sum, name, ok := strings.Cut(line, "  ")
			if !ok || len(sum) != 64 || name == "" {
				return fmt.Errorf("manifest: bad line %d", n)
			}
			want[name] = sum
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if len(want) == 0 {
		return errors.New("manifest: no jars")
	}
	jars, err := listJars(filepath.Join(dir, "libs"))
	if err != nil {
		return err
	}
	if len(jars) != len(want) {
		return fmt.Errorf("manifest: %d jars listed, %d present", len(want), len(jars))
	}
	for _, j := range jars {
		sum, ok := want[j]
		if !ok {
			return fmt.Errorf("manifest: unexpected jar %s", j)
		}
		got, err := fileSHA256(filepath.Join(dir, "libs", j))
		if err != nil {
			return err
		}
		if got != sum {
			return fmt.Errorf("manifest: checksum mismatch for %s", j)
		}
	}
	return nil
}

func listJars(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var jars []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".jar") {
			jars = append(jars, e.Name())
		}
	}
	slices.Sort(jars)
	return jars, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
