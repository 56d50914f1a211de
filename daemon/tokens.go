package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/coupond/coupond/httpapi"
	"github.com/coupond/coupond/raftfsm"
)

// ensureBootstrapTokens gives a single node what SPEC §3 promises: an
// operator token and an admin token of the ready-made default tenant, each
// in a 0600 file of the data folder. It runs on a fresh cluster, and on a
// restart of a single-node cluster whose token files are missing (a crash
// between bootstrap and writing them, or an operator who deleted one to get
// a new secret). Only paths reach the log, never the secrets.
func (n *Node) ensureBootstrapTokens(fresh bool) error {
	opPath := filepath.Join(n.cfg.DataDir, operatorToken)
	adPath := filepath.Join(n.cfg.DataDir, adminToken)
	if !fresh && exists(opPath) && exists(adPath) {
		return nil
	}
	if !fresh {
		f := n.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			return err
		}
		if len(f.Configuration().Servers) != 1 {
			return nil // a member of a larger cluster gets its tokens from an operator
		}
	}
	if err := n.waitLeader(leaderWait); err != nil {
		return err
	}
	now := time.Now().UnixNano()
	if err := n.applyOnce(&raftfsm.CreateTenant{ID: defaultTenant, Name: "Default tenant", At: now}); err != nil {
		return fmt.Errorf("cannot create the default tenant: %w", err)
	}
	for _, t := range []struct {
		path   string
		role   raftfsm.Role
		tenant string
		name   string
	}{{opPath, raftfsm.RoleOperator, "", "bootstrap operator"}, {adPath, raftfsm.RoleAdmin, defaultTenant, "bootstrap admin"}} {
		if exists(t.path) {
			continue
		}
		secret, hash, id := httpapi.NewSecret()
		if err := n.applyOnce(&raftfsm.CreateToken{ID: id, Tenant: t.tenant, Role: t.role, Name: t.name, Hash: hash, At: now}); err != nil {
			return fmt.Errorf("cannot create the %s token: %w", t.role, err)
		}
		if err := writeSecretFile(t.path, secret); err != nil {
			return err
		}
		n.log.Info().Str("path", t.path).Str("role", t.role.String()).Str("token_id", id).Msg("wrote token file")
	}
	return nil
}

// applyOnce applies a command the daemon itself issues, where "it exists
// already" means an earlier run or leader did it: that is success.
func (n *Node) applyOnce(c raftfsm.Command) error { return n.prop.ApplyOnce(c, n.done) }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// writeSecretFile writes a 0600 file atomically: a crash leaves the old file or the new one.
func writeSecretFile(path, secret string) error {
	if err := writeFileSynced(path, []byte(secret+"\n")); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return nil
}
