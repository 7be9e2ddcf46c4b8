package kafkabroker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestManifest(t *testing.T) {
	pomSum := sha256Hex(generatePOM(DefaultKafkaVersion))
	for _, tc := range []struct {
		name    string
		tamper  func(t *testing.T, dir string)
		pomSum  string
		wantErr string
	}{
		{name: "intact"},
		{
			name:    "jar changed",
			tamper:  func(t *testing.T, dir string) { write(t, filepath.Join(dir, "libs", "a.jar"), "other") },
			wantErr: "checksum mismatch for a.jar",
		},
		{
			name:    "jar missing",
			tamper:  func(t *testing.T, dir string) { rm(t, filepath.Join(dir, "libs", "b.jar")) },
			wantErr: "2 jars listed, 1 present",
		},
		{
			name: "jar added",
			tamper: func(t *testing.T, dir string) {
				rm(t, filepath.Join(dir, "libs", "b.jar"))
				write(t, filepath.Join(dir, "libs", "c.jar"), "c")
			},
			wantErr: "unexpected jar c.jar",
		},
		{
			name:    "artifact list changed",
			pomSum:  sha256Hex(generatePOM("4.0.0")),
			wantErr: "artifact list changed",
		},
		{
			name:    "no manifest",
			tamper:  func(t *testing.T, dir string) { rm(t, filepath.Join(dir, manifestName)) },
			wantErr: "no such file",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "libs"), 0o755); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(dir, "libs", "a.jar"), "a")
			write(t, filepath.Join(dir, "libs", "b.jar"), "b")
			if err := writeManifest(dir, pomSum); err != nil {
				t.Fatal(err)
			}
			if tc.tamper != nil {
				tc.tamper(t, dir)
			}
			sum := pomSum
			if tc.pomSum != "" {
				sum = tc.pomSum
			}
			err := verifyManifest(dir, sum)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("verify: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("verify: got %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestGeneratePOMListsArtifacts(t *testing.T) {
	pom := string(generatePOM("4.4.0"))
	for _, a := range Artifacts("4.4.0") {
		want := "<groupId>" + a.GroupID + "</groupId><artifactId>" + a.ArtifactID + "</artifactId><version>" + a.Version + "</version>"
		if !strings.Contains(pom, want) {
			t.Errorf("pom lacks %s", a)
		}
	}
}

func TestValidVersion(t *testing.T) {
	for v, ok := range map[string]bool{
		"4.4.0": true, "4.1.2": true, "4.2.0-rc1": true,
		"": false, "../4.4.0": false, "4.4.0</version>": false, "x4": false,
	} {
		if err := validVersion(v); (err == nil) != ok {
			t.Errorf("validVersion(%q) = %v, want ok=%v", v, err, ok)
		}
	}
}

func TestNewClusterID(t *testing.T) {
	for range 100 {
		id, err := newClusterID()
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != 22 || id[0] == '-' {
			t.Fatalf("cluster id %q: want 22 URL-safe base64 chars not starting with '-'", id)
		}
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func rm(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}
