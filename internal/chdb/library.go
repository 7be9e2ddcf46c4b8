// Package chdb runs a real ClickHouse server from libchdb (the ClickHouse
// engine built as a shared library) on loopback, either inside this process
// or as a child process. Everything else in agentaudit talks to the server
// only through clickhouse-go, exactly as to a production ClickHouse.
package chdb

import (
	"archive/tar"
	"compress/gzip"
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
	"strconv"
	"strings"
)

// The pinned engine. The npm package carries libchdb.so; its hash is checked
// on every fetch and whenever the cached copy changed on disk.
const (
	NPMPackage    = "@chdb/lib-linux-x64-gnu"
	NPMVersion    = "26.7.3-stable.1"
	LibrarySHA256 = "36ad4e999882821ef13cf2d0f52c93f48e6ee1b4498b35a201c23ce4b8d15bf5"
	libraryName   = "libchdb.so"
)

// Errors callers can test for with errors.Is.
var (
	ErrNPMMissing    = errors.New("npm not found on PATH (needed once to fetch libchdb from the npm registry)")
	ErrLibraryHash   = errors.New("libchdb.so hash mismatch")
	ErrLibraryAbsent = errors.New("libchdb.so not found")
)

// CacheDir is where downloads are kept across runs: $AGENTAUDIT_CACHE, else
// $XDG_CACHE_HOME/agentaudit, else ~/.cache/agentaudit.
func CacheDir() string {
	if d := os.Getenv("AGENTAUDIT_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "agentaudit")
	}
	return filepath.Join(os.TempDir(), "agentaudit-cache")
}

// LibraryPath returns the path of a verified libchdb.so, fetching it into
// cacheDir with npm when it is not there yet. AGENTAUDIT_LIBCHDB names an
// explicit file instead (it is verified against the pinned hash too).
func LibraryPath(ctx context.Context, cacheDir string, log *slog.Logger) (string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if p := os.Getenv("AGENTAUDIT_LIBCHDB"); p != "" {
		if err := verifyCached(p); err != nil {
			return "", fmt.Errorf("AGENTAUDIT_LIBCHDB=%s: %w", p, err)
		}
		return p, nil
	}
	dir := filepath.Join(cacheDir, "libchdb-"+NPMVersion)
	lib := filepath.Join(dir, libraryName)
	if err := verifyCached(lib); err == nil {
		return lib, nil
	} else if !errors.Is(err, ErrLibraryAbsent) {
		log.Warn("cached libchdb is not the pinned build, fetching again", "path", lib, "err", err)
	}
	if err := fetchLibrary(ctx, dir, log); err != nil {
		return "", err
	}
	if err := verifyCached(lib); err != nil {
		return "", err
	}
	return lib, nil
}

// verifyCached checks the file against the pinned hash. Hashing 566 MB takes
// a second or two, so a successful check is remembered in a stamp file keyed
// by size and modification time; any change to the file forces a re-hash.
func verifyCached(lib string) error {
	st, err := os.Stat(lib)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w at %s", ErrLibraryAbsent, lib)
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", lib, err)
	}
	stamp := lib + ".verified"
	want := fmt.Sprintf("%s %d %d", LibrarySHA256, st.Size(), st.ModTime().UnixNano())
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == want {
		return nil
	}
	sum, err := fileSHA256(lib)
	if err != nil {
		return err
	}
	if sum != LibrarySHA256 {
		return fmt.Errorf("%w: %s has sha256 %s, want %s (%s@%s)", ErrLibraryHash, lib, sum, LibrarySHA256, NPMPackage, NPMVersion)
	}
	_ = os.WriteFile(stamp, []byte(want+"\n"), 0o644) // only an optimisation
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fetchLibrary runs `npm pack` for the pinned package into a temporary
// directory and extracts libchdb.so from the tarball, renaming it into place
// only when complete so an interrupted fetch never leaves a half file.
func fetchLibrary(ctx context.Context, dir string, log *slog.Logger) error {
	npm, err := exec.LookPath("npm")
	if err != nil {
		return ErrNPMMissing
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create cache dir: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "fetch-")
	if err != nil {
		return fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	spec := NPMPackage + "@" + NPMVersion
	log.Info("fetching ClickHouse engine from the npm registry", "package", spec, "dir", dir)
	cmd := exec.CommandContext(ctx, npm, "pack", spec, "--pack-destination", tmp, "--silent")
	cmd.Dir = tmp
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("npm pack %s: %w: %s", spec, err, tail(out, 2000))
	}
	tgz := filepath.Join(tmp, strings.TrimSpace(lastLine(string(out))))
	if _, err := os.Stat(tgz); err != nil {
		matches, _ := filepath.Glob(filepath.Join(tmp, "*.tgz"))
		if len(matches) != 1 {
			return fmt.Errorf("npm pack %s: tarball not found in %s (output %q)", spec, tmp, tail(out, 500))
		}
		tgz = matches[0]
	}
	part := filepath.Join(tmp, libraryName+".part")
	if err := extractFile(tgz, "package/"+libraryName, part); err != nil {
		return err
	}
	sum, err := fileSHA256(part)
	if err != nil {
		return err
	}
	if sum != LibrarySHA256 {
		return fmt.Errorf("%w: %s from %s has sha256 %s, want %s", ErrLibraryHash, libraryName, spec, sum, LibrarySHA256)
	}
	lib := filepath.Join(dir, libraryName)
	_ = os.Remove(lib + ".verified")
	if err := os.Rename(part, lib); err != nil {
		return fmt.Errorf("install %s: %w", lib, err)
	}
	return nil
}

func extractFile(tgz, name, dst string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return fmt.Errorf("open %s: %w", tgz, err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", tgz, err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return fmt.Errorf("%s: %w inside %s", name, ErrLibraryAbsent, tgz)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", tgz, err)
		}
		if h.Name != name {
			continue
		}
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
		if err != nil {
			return fmt.Errorf("create %s: %w", dst, err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return fmt.Errorf("extract %s: %w", name, err)
		}
		return out.Close()
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strconv.Quote(strings.TrimSpace(string(b)))
}
