package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
)

// lockFile is the file of the data folder that a running node holds an
// exclusive lock on. Renaming it lets two versions run on one folder.
const lockFile = "coupond.lock"

// privateUmask makes every file and folder the node creates readable by
// its owner only (0600, 0700): the data folder holds recipients, codes,
// token hashes and the cluster key, and Pebble and Raft create files with
// 0666/0755 modulo the umask.
const privateUmask = 0o077

// lockDataDir takes the data folder for this process, so that a second
// coupond on it stops at once with a clear message instead of an errno of
// Pebble or bolt. The lock goes with the returned file (closed last by
// closeStores) or with the process.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open the lock file of data folder %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := ""
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid := strings.TrimSpace(string(b)); pid != "" {
					holder = " (pid " + pid + ")"
				}
			}
			return nil, fmt.Errorf("cannot use data folder %s: another coupond process%s holds it; stop that one first, or give this one another --data", dir, holder)
		}
		return nil, fmt.Errorf("cannot lock data folder %s: %w", dir, err)
	}
	// The pid only helps the message of a second process; the lock is what counts.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// tightenDataDir makes the data folder 0700, and what earlier runs left in
// it (with a looser umask, or by an older version) 0600 for files and 0700
// for folders. Only the node's own entries are walked, in case --data names
// a folder that holds other things too. It logs what it changed.
func tightenDataDir(dir string, log zerolog.Logger) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("cannot read data folder: %w", err)
	}
	switch perm := fi.Mode().Perm(); {
	case perm&0o077 == 0:
	case os.Chmod(dir, 0o700) != nil:
		// A folder of another owner (a mount point, say): what the node
		// keeps in it is owner-only all the same, so it may still run.
		log.Error().Str("data", dir).Str("mode", fmt.Sprintf("%04o", perm)).
			Msg("cannot tighten the data folder to 0700: others may list it; its files stay owner-only")
	default:
		log.Warn().Str("data", dir).Str("was", fmt.Sprintf("%04o", perm)).
			Msg("data folder was readable by others: tightened to 0700")
	}
	tightened := 0
	for _, name := range []string{stateDir, snapshotsDir, raftLogFile, operatorToken, adminToken, lockFile} {
		err := filepath.WalkDir(filepath.Join(dir, name), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.Type()&fs.ModeSymlink != 0 {
				return nil // a chmod would change what the link points to
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			if perm := info.Mode().Perm(); perm&0o077 != 0 {
				tightened++
				return os.Chmod(path, perm&^0o077)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("cannot make the files of data folder %s private: %w", dir, err)
		}
	}
	if tightened > 0 {
		log.Warn().Str("data", dir).Int("entries", tightened).
			Msg("files of the data folder were readable by others: tightened to owner only")
	}
	return nil
}

// prepareDataDir makes the data folder private and takes it for this
// process: the umask first, so that whatever the node creates from here on
// is its owner's only; then the folder, its lock, and the tightening of
// what earlier runs left.
func prepareDataDir(dir string, log zerolog.Logger) (*os.File, error) {
	syscall.Umask(privateUmask)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create data folder: %w", err)
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		return nil, err
	}
	if err := tightenDataDir(dir, log); err != nil {
		lock.Close()
		return nil, err
	}
	return lock, nil
}

// snapshotsMissing notices a snapshots folder deleted while the node runs
// and takes a snapshot at once to make it again: without one, the log's
// compacted start is covered by nothing, and a restart would be refused
// (checkIntegrity). It reports whether the folder was missing.
// Raft answers ErrNothingNewToSnapshot until this process applied an
// entry; the next poll tries again, and *logged keeps that to one log line.
func (n *Node) snapshotsMissing(logged *bool) bool {
	dir := filepath.Join(n.cfg.DataDir, snapshotsDir)
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	err := n.await(n.raft.Snapshot())
	switch {
	case err == nil:
		n.log.Warn().Str("path", dir).Msg("the snapshots folder was deleted: a new snapshot made it again")
		*logged = false
	case !*logged:
		n.log.Error().Str("path", dir).Err(err).
			Msg("the snapshots folder was deleted and no snapshot can replace it yet; a restart before one is taken will be refused")
		*logged = true
	}
	return true
}
