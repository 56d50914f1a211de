package httpapi

import (
	"github.com/cockroachdb/pebble/v2"

	"github.com/coupond/coupond/raftfsm"
	"github.com/coupond/coupond/raftfsm/propose"
)

// The API talks to the rest of the node through two interfaces: writes go
// through the proposer (Writer), reads come from the state machine's local
// state (Reader). *propose.Proposer and *raftfsm.FSM satisfy them; handler
// tests use fakes.

// Writer changes the state and tells about the consensus. Its errors are
// the state machine's domain errors or the proposer's (errors.go maps both).
type Writer interface {
	Propose(c raftfsm.Command) (any, error)
	OpenSend(c *raftfsm.OpenSend) (raftfsm.OpenResult, error)
	CloseSend(c *raftfsm.CloseSend) (*raftfsm.Send, error)
	Allocate(a propose.Allocation) (propose.Allocated, error)
	Release(r propose.ReleaseRequest) (raftfsm.ReleaseResult, error)
	Import(imp propose.Import, body propose.ImportBody) (raftfsm.ImportResult, error)
	AddVoter(node raftfsm.NodeInfo) error
	RemoveMember(id string) error
	// Writable is nil when this node can write its state now.
	Writable() error

	IsLeader() bool
	Leader() string // the leader's node id, "" when none is known
	ReadBarrier() error
	Members() ([]propose.Member, error)
	Status() propose.Status
}

// Reader reads this node's state.
type Reader interface {
	AppliedIndex() uint64
	// SettledIndex is the index every answer given so far is durable at
	// (writes may be answered before their entry is committed to Pebble).
	SettledIndex() uint64
	Digest() string

	TokenByHash(h [32]byte) (*raftfsm.Token, bool)
	Tenant(id string) (*raftfsm.Tenant, bool)
	Tenants() []*raftfsm.Tenant
	Node(id string) (raftfsm.NodeInfo, bool)
	ClusterKey() ([raftfsm.ClusterKeyLen]byte, bool)

	List(tenant string, id uint64) (*raftfsm.ListView, bool)
	Lists(tenant string) []*raftfsm.ListView
	CodeState(tenant string, list uint64, code []byte) (raftfsm.CodeInfo, error)
	Message(tenant, id string) (*raftfsm.Message, bool)
	MessagesOfList(tenant string, list uint64) []*raftfsm.Message
	Send(tenant, id string) (*raftfsm.Send, bool)
	EachAssignment(tenant, send string, fn func(a *raftfsm.Assignment) error) error
	RecipientHistory(tenant string, recipient []byte) ([]raftfsm.Assignment, error)
	Forecast(tenant string, list uint64, recipients uint64, send string, now int64) (raftfsm.Forecast, error)
	Overlaps(tenant string, list uint64) ([]raftfsm.Overlap, error)
	// NextCode and LiveAssignment serve the preview of `$code`.
	NextCode(tenant string, list uint64) (code string, ok bool, err error)
	LiveAssignment(tenant, send string, recipient []byte) (a raftfsm.Assignment, ok bool, err error)

	// For the node's metrics.
	CodesAllocated() uint64
	CodesImported() uint64
	FallbacksGiven() uint64
	CodesReleased() uint64
	AssignmentsErased() uint64
	ExpiredLists(now int64) int
	ListsSummary(limit int) (oldest []raftfsm.ListAvailability, lists int, available uint64)
	StoreMetrics() *pebble.Metrics
}

var (
	_ Writer = (*propose.Proposer)(nil)
	_ Reader = (*raftfsm.FSM)(nil)
)
