package raftfsm

import (
	"fmt"
	"sort"
)

// The node directory and the cluster key. Raft knows each
// server's id and Raft address; the API also needs each node's HTTP
// address, to forward calls to the leader, and a key shared by the nodes
// alone, to sign the calls they forward to each other. Both travel through
// the log like any other state, so a node that joins learns them by
// replication.

// ClusterKeyLen is the length of the key that signs forwarded calls.
const ClusterKeyLen = 32

// NodeInfo is one node of the directory.
type NodeInfo struct {
	ID, RaftAddr, HTTPAddr string
}

// The record and the command body hold the same fields.
func appendNodeInfo(b []byte, n NodeInfo) []byte {
	b = appendString(b, n.ID)
	b = appendString(b, n.RaftAddr)
	return appendString(b, n.HTTPAddr)
}

func decodeNodeInfo(d *decoder) NodeInfo {
	return NodeInfo{ID: d.string("ID"), RaftAddr: d.string("RaftAddr"), HTTPAddr: d.string("HTTPAddr")}
}

func (n *NodeInfo) marshal() []byte { return appendNodeInfo([]byte{recordVersion}, *n) }

func unmarshalNode(v []byte) (*NodeInfo, error) {
	d := recordDecoder(v)
	n := decodeNodeInfo(d)
	return &n, d.done()
}

// SetNode records (or updates) a node's addresses.
type SetNode struct{ Node NodeInfo }

func (*SetNode) Type() CmdType                { return CmdSetNode }
func (c *SetNode) appendBody(b []byte) []byte { return appendNodeInfo(b, c.Node) }
func (c *SetNode) decodeBody(d *decoder)      { c.Node = decodeNodeInfo(d) }
func (*SetNode) at(entryAt int64) int64       { return entryAt }

func (c *SetNode) apply(a *applier) (any, error) {
	a.set(nodeKey(c.Node.ID), c.Node.marshal())
	n := c.Node
	a.f.mu.Lock()
	a.f.nodes[n.ID] = &n
	a.f.mu.Unlock()
	return nil, nil
}

// RemoveNode drops a node from the directory.
type RemoveNode struct{ ID string }

func (*RemoveNode) Type() CmdType                { return CmdRemoveNode }
func (c *RemoveNode) appendBody(b []byte) []byte { return appendString(b, c.ID) }
func (c *RemoveNode) decodeBody(d *decoder)      { c.ID = d.string("ID") }
func (*RemoveNode) at(entryAt int64) int64       { return entryAt }

func (c *RemoveNode) apply(a *applier) (any, error) {
	a.f.mu.RLock()
	_, ok := a.f.nodes[c.ID]
	a.f.mu.RUnlock()
	if !ok {
		return nil, ErrNotFound
	}
	a.del(nodeKey(c.ID))
	a.f.mu.Lock()
	delete(a.f.nodes, c.ID)
	a.f.mu.Unlock()
	return nil, nil
}

// SetClusterKey sets the key that signs forwarded calls, once: a second
// one is refused with ErrExists, so two leaders racing at bootstrap agree.
type SetClusterKey struct{ Key [ClusterKeyLen]byte }

func (*SetClusterKey) Type() CmdType                { return CmdSetClusterKey }
func (c *SetClusterKey) appendBody(b []byte) []byte { return append(b, c.Key[:]...) }
func (c *SetClusterKey) decodeBody(d *decoder)      { copy(c.Key[:], d.fixed("Key", ClusterKeyLen)) }
func (*SetClusterKey) at(entryAt int64) int64       { return entryAt }

func (c *SetClusterKey) apply(a *applier) (any, error) {
	a.f.mu.RLock()
	has := a.f.clusterKey != nil
	a.f.mu.RUnlock()
	if has {
		return nil, ErrExists
	}
	a.set(keyClusterKey, c.Key[:])
	k := c.Key
	a.f.mu.Lock()
	a.f.clusterKey = &k
	a.f.mu.Unlock()
	return nil, nil
}

var keyClusterKey = []byte{prefixMeta, 'c'}

func nodeKey(id string) []byte { return append([]byte{prefixNode}, id...) }

func (s *state) loadNode(_, v []byte) error {
	n, err := unmarshalNode(v)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	s.nodes[n.ID] = n
	return nil
}

func (s *state) loadClusterKey(_, v []byte) error {
	if len(v) != ClusterKeyLen {
		return fmt.Errorf("cluster key of %d bytes: %w", len(v), errCorrupt)
	}
	var key [ClusterKeyLen]byte
	copy(key[:], v)
	s.clusterKey = &key
	return nil
}

// Node returns a node of the directory.
func (f *FSM) Node(id string) (NodeInfo, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n, ok := f.nodes[id]
	if !ok {
		return NodeInfo{}, false
	}
	return *n, true
}

// Nodes returns the directory sorted by id.
func (f *FSM) Nodes() []NodeInfo {
	f.mu.RLock()
	out := make([]NodeInfo, 0, len(f.nodes))
	for _, n := range f.nodes {
		out = append(out, *n)
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ClusterKey returns the key that signs forwarded calls, if one is set yet.
func (f *FSM) ClusterKey() ([ClusterKeyLen]byte, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.clusterKey == nil {
		return [ClusterKeyLen]byte{}, false
	}
	return *f.clusterKey, true
}
