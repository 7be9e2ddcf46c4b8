package integrity

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Manifest accompanies an export (NDJSON, CSV …): the SHA-256 of the
// exported bytes and the checkpoints the exported events are provable
// against, signed as a note:
//
//	<origin>/export\n
//	sha256 <hex>\n
//	rows <n>\n
//	checkpoint <log id> <size> <base64 root>\n   (one per log, sorted)
//	time <RFC 3339 nanoseconds>\n
//	\n
//	— <key name> <base64(key id || signature)>\n
//
// An auditor checks the signature (VerifyManifest), hashes the file, and
// may ask for inclusion proofs of any exported event against the listed
// checkpoints.
type Manifest struct {
	SHA256      []byte
	Rows        int64
	Checkpoints []*Checkpoint // LogID, Size and Root are used
	TS          time.Time
	Note        string // set by SignManifest / VerifyManifest
}

// SignManifest signs m and sets m.Note.
func (s *Signer) SignManifest(m *Manifest) (string, error) {
	if len(m.SHA256) != sha256.Size {
		return "", fmt.Errorf("manifest: sha256 must be %d bytes", sha256.Size)
	}
	cps := slices.Clone(m.Checkpoints)
	slices.SortFunc(cps, func(a, b *Checkpoint) int { return cmpLogID(a.LogID, b.LogID) })
	var b strings.Builder
	fmt.Fprintf(&b, "%s/export\nsha256 %s\nrows %d\n", s.origin, hex.EncodeToString(m.SHA256), m.Rows)
	for _, cp := range cps {
		if strings.ContainsAny(cp.LogID, " \n") {
			return "", fmt.Errorf("manifest: bad log id %q", cp.LogID)
		}
		fmt.Fprintf(&b, "checkpoint %s %d %s\n", cp.LogID, cp.Size, base64.StdEncoding.EncodeToString(cp.Root))
	}
	fmt.Fprintf(&b, "time %s\n", m.TS.UTC().Format(time.RFC3339Nano))
	m.Note, _ = s.signNote(b.String())
	return m.Note, nil
}

// VerifyManifest checks a manifest note's signature and parses it.
func VerifyManifest(note string, keys PublicKeys) (*Manifest, error) {
	body, _, _, err := verifySigned(note, keys)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Note: note}
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if len(lines) < 4 || !strings.HasSuffix(lines[0], "/export") {
		return nil, fmt.Errorf("%w: not an export manifest", ErrBadCheckpoint)
	}
	for _, line := range lines[1:] {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "sha256":
			if m.SHA256, err = hex.DecodeString(v); err != nil || len(m.SHA256) != sha256.Size {
				return nil, fmt.Errorf("%w: bad sha256 line", ErrBadCheckpoint)
			}
		case "rows":
			if m.Rows, err = strconv.ParseInt(v, 10, 64); err != nil {
				return nil, fmt.Errorf("%w: bad rows line", ErrBadCheckpoint)
			}
		case "checkpoint":
			f := strings.Fields(v)
			if len(f) != 3 {
				return nil, fmt.Errorf("%w: bad checkpoint line", ErrBadCheckpoint)
			}
			size, err1 := strconv.ParseUint(f[1], 10, 64)
			root, err2 := base64.StdEncoding.DecodeString(f[2])
			if err1 != nil || err2 != nil || len(root) != 32 {
				return nil, fmt.Errorf("%w: bad checkpoint line", ErrBadCheckpoint)
			}
			m.Checkpoints = append(m.Checkpoints, &Checkpoint{LogID: f[0], Size: size, Root: root})
		case "time":
			if m.TS, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return nil, fmt.Errorf("%w: bad time line", ErrBadCheckpoint)
			}
		}
	}
	if m.SHA256 == nil {
		return nil, fmt.Errorf("%w: manifest without sha256", ErrBadCheckpoint)
	}
	return m, nil
}
