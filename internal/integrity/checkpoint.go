package integrity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Checkpoint is a signed tree head of one log: the note text is what is
// signed and published; the other fields repeat what it says.
//
// The note follows C2SP tlog-checkpoint / signed-note in spirit:
//
//	<origin>\n<size>\n<base64 root>\ntime <RFC 3339 nanoseconds>\n
//	\n
//	— <key name> <base64(4-byte key id || ed25519 signature)>\n
//
// The signature covers the body (the four lines above the blank one). The
// key id is the first 4 bytes of SHA-256 of the public key (KeyID), not
// C2SP's name-bound key hash, so one public key verifies checkpoints of
// every origin.
//
// JSON (for the query API): byte fields are base64.
type Checkpoint struct {
	LogID     string    `json:"log_id"`
	Origin    string    `json:"origin"`
	Size      uint64    `json:"size"`
	Root      []byte    `json:"root"`
	TS        time.Time `json:"ts"`
	KeyID     string    `json:"key_id"`
	Signature []byte    `json:"signature"`
	Note      string    `json:"note"` // what to verify; the other fields repeat it
	// Range is the compact range [0, Size) of the tree (the roots of its
	// perfect subtrees, left to right): not signed, but bound to Root, so
	// OpenLog can resume from it without reading every leaf.
	Range [][]byte `json:"-"`
}

// ErrBadCheckpoint wraps every reason a checkpoint does not verify.
var ErrBadCheckpoint = errors.New("invalid checkpoint")

// sign builds and signs the checkpoint of logID at size with root.
func (s *Signer) sign(logID string, size uint64, root []byte, ts time.Time) *Checkpoint {
	ts = ts.UTC().Truncate(time.Millisecond) // checkpoints.ts is DateTime64(3)
	body := fmt.Sprintf("%s\n%d\n%s\ntime %s\n", s.Origin(logID), size, base64.StdEncoding.EncodeToString(root), ts.Format(time.RFC3339Nano))
	note, sig := s.signNote(body)
	return &Checkpoint{LogID: logID, Origin: s.Origin(logID), Size: size, Root: root, TS: ts, KeyID: s.keyID, Signature: sig, Note: note}
}

// VerifyNote checks a checkpoint note's signature with keys and returns what
// it says. LogID is the origin's last two path elements ("audit_events/3").
// It does not check the root against any tree.
func VerifyNote(note string, keys PublicKeys) (*Checkpoint, error) {
	body, keyID, sig, err := verifySigned(note, keys)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if len(lines) < 3 {
		return nil, fmt.Errorf("%w: want origin, size and root lines", ErrBadCheckpoint)
	}
	cp := &Checkpoint{Origin: lines[0], Note: note, KeyID: keyID, Signature: sig}
	if cp.Size, err = strconv.ParseUint(lines[1], 10, 64); err != nil || strconv.FormatUint(cp.Size, 10) != lines[1] {
		return nil, fmt.Errorf("%w: bad size line", ErrBadCheckpoint)
	}
	if cp.Root, err = base64.StdEncoding.DecodeString(lines[2]); err != nil || len(cp.Root) != 32 {
		return nil, fmt.Errorf("%w: bad root line", ErrBadCheckpoint)
	}
	for _, ext := range lines[3:] {
		if t, ok := strings.CutPrefix(ext, "time "); ok {
			if cp.TS, err = time.Parse(time.RFC3339Nano, t); err != nil {
				return nil, fmt.Errorf("%w: bad time line", ErrBadCheckpoint)
			}
		}
	}
	parts := strings.Split(cp.Origin, "/")
	if len(parts) < 3 {
		return nil, fmt.Errorf("%w: origin %q does not end in a log id", ErrBadCheckpoint, cp.Origin)
	}
	cp.LogID = strings.Join(parts[len(parts)-2:], "/")
	return cp, nil
}

// signNote signs body (lines ending in "\n") as a signed note.
func (s *Signer) signNote(body string) (note string, sig []byte) {
	sig = ed25519.Sign(s.key, []byte(body))
	id, _ := hex.DecodeString(s.keyID)
	return body + "\n\u2014 " + s.origin + " " + base64.StdEncoding.EncodeToString(append(id, sig...)) + "\n", sig
}

// verifySigned checks the first signature line by a known key and returns
// the signed body.
func verifySigned(note string, keys PublicKeys) (body, keyID string, sig []byte, err error) {
	body, sigs, ok := strings.Cut(note, "\n\n")
	if !ok {
		return "", "", nil, fmt.Errorf("%w: no blank line before the signatures", ErrBadCheckpoint)
	}
	body += "\n"
	lastErr := fmt.Errorf("%w: no signature line", ErrBadCheckpoint)
	for _, line := range strings.Split(strings.TrimSuffix(sigs, "\n"), "\n") {
		rest, ok := strings.CutPrefix(line, "\u2014 ")
		if !ok {
			return "", "", nil, fmt.Errorf("%w: malformed signature line", ErrBadCheckpoint)
		}
		_, b64, ok := strings.Cut(rest, " ")
		if !ok {
			return "", "", nil, fmt.Errorf("%w: malformed signature line", ErrBadCheckpoint)
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(raw) != 4+ed25519.SignatureSize {
			return "", "", nil, fmt.Errorf("%w: malformed signature", ErrBadCheckpoint)
		}
		id := hex.EncodeToString(raw[:4])
		pk, known := keys[id]
		if !known {
			lastErr = fmt.Errorf("%w: signed by unknown key %s", ErrBadCheckpoint, id)
			continue
		}
		if !ed25519.Verify(pk, []byte(body), raw[4:]) {
			return "", "", nil, fmt.Errorf("%w: signature of key %s does not verify", ErrBadCheckpoint, id)
		}
		return body, id, raw[4:], nil
	}
	return "", "", nil, lastErr
}

// verifyRow checks a stored checkpoint row: the note's signature and that
// every column says what the signed note says.
func verifyRow(row *Checkpoint, keys PublicKeys) error {
	cp, err := VerifyNote(row.Note, keys)
	if err != nil {
		return err
	}
	switch {
	case cp.LogID != row.LogID:
		return fmt.Errorf("%w: note is for log %s, row says %s", ErrBadCheckpoint, cp.LogID, row.LogID)
	case cp.Size != row.Size:
		return fmt.Errorf("%w: note says size %d, row says %d", ErrBadCheckpoint, cp.Size, row.Size)
	case !bytes.Equal(cp.Root, row.Root):
		return fmt.Errorf("%w: row root_hash differs from the signed root", ErrBadCheckpoint)
	case cp.KeyID != row.KeyID:
		return fmt.Errorf("%w: note signed by key %s, row says %s", ErrBadCheckpoint, cp.KeyID, row.KeyID)
	case !bytes.Equal(cp.Signature, row.Signature):
		return fmt.Errorf("%w: row signature differs from the note's", ErrBadCheckpoint)
	}
	return nil
}
