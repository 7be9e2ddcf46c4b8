package deploycheck

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
)

// One embedded ClickHouse for the test binary: the dashboard queries run
// on it (compose and Dockerfile checks do not need it).
func TestMain(m *testing.M) { chtest.Main(m) }

// root returns the repository root (where go.mod is).
func root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

func repoPath(t testing.TB, rel string) string {
	t.Helper()
	return filepath.Join(root(t), filepath.FromSlash(rel))
}

func newFlagSet() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }
