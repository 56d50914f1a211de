package daemon_test

// A cluster over TLS (--tls-cert/--tls-key/--tls-ca): the API is HTTPS,
// Raft is mutual TLS, forwarded calls are HTTPS verified against the CA.
// A node whose certificate another CA signed never receives the log.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coupond/coupond/daemon"
)

// testCA is a certificate authority of a test, its files in dir.
type testCA struct {
	t      *testing.T
	dir    string
	name   string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pem    []byte
	caFile string
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{t: t, dir: t.TempDir(), name: name, cert: cert, key: key,
		pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	ca.caFile = filepath.Join(ca.dir, "ca.pem")
	if err := os.WriteFile(ca.caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

func serial(t *testing.T) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// issue signs a certificate for a node on 127.0.0.1, good for both ends of
// a mutual TLS connection, and writes its certificate and key files.
func (ca *testCA) issue(name string) (certFile, keyFile string) {
	t := ca.t
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(ca.dir, name+".pem")
	keyFile = filepath.Join(ca.dir, name+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(ca.pem)
	return p
}

// httpsClient trusts ca only and presents no certificate.
func httpsClient(ca *testCA) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.pool(), MinVersion: tls.VersionTLS12},
	}}
}

// tlsNodeConfig is a node of the TLS cluster: certificate signed by
// certCA, peers checked against trustCA.
func tlsNodeConfig(t *testing.T, id string, certCA, trustCA *testCA) daemon.Config {
	cert, key := certCA.issue(id)
	return daemon.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		NodeID: id, LogFormat: "json", LogLevel: "warn", TLSCert: cert, TLSKey: key, TLSCA: trustCA.caFile}
}

// raftAddrOf answers the Raft address of a server in leader's configuration.
func raftAddrOf(t *testing.T, leader *clusterNode, id string) string {
	t.Helper()
	f := leader.n.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return string(s.Address)
		}
	}
	t.Fatalf("%s is not in the configuration", id)
	return ""
}

// raftHandshake opens a TLS connection to a Raft address as a client with
// the given certificate (none if certFile is ""), trusting ca, and reads
// from it. A peer the server accepts gets no answer (the server waits for
// an RPC): the read times out. A refused peer reads the server's alert.
func raftHandshake(t *testing.T, addr string, ca *testCA, certFile, keyFile string) error {
	t.Helper()
	tc := &tls.Config{RootCAs: ca.pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		// Sent even when the server asks for another CA's certificates (a
		// client with Certificates would then send none).
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tc)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Second))
	var b [1]byte
	_, err = c.Read(b[:])
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestTLSCluster(t *testing.T) {
	start := time.Now()
	ca := newTestCA(t, "coupond test CA")
	client := httpsClient(ca)
	nodes := make([]*clusterNode, 3)
	for i := range nodes {
		cfg := tlsNodeConfig(t, fmt.Sprintf("n%d", i+1), ca, ca)
		if i > 0 {
			cfg.Join = nodes[0].n.HTTPAddr()
			cfg.TokenFile = filepath.Join(nodes[0].cfg.DataDir, "operator.token")
		}
		nodes[i] = startClusterNode(t, cfg, client)
		if i > 0 {
			waitJoined(t, nodes[0], nodes[i])
		}
	}
	op, admin := nodes[0].readToken("operator.token"), nodes[0].readToken("admin.token")
	waitConverged(t, op, nodes...)
	t.Logf("3 TLS nodes joined in %s", time.Since(start).Round(time.Millisecond))

	// The API answers HTTPS only.
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + nodes[1].n.HTTPAddr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("the API answered plain HTTP")
		}
	}

	// Writes through a follower are forwarded to the leader over HTTPS.
	leader := leaderAmong(nodes...)
	if leader == nil {
		t.Fatal("no single leader")
	}
	var follower *clusterNode
	for _, cn := range nodes {
		if cn != leader {
			follower = cn
			break
		}
	}
	var created struct {
		List fullList `json:"list"`
	}
	follower.must(201, &created, "POST", "/v1/lists?name=tls", admin, "text/csv", csvCodes("T", 0, 300))
	list := created.List.ID
	var res importResult
	follower.must(200, &res, "POST", "/v1/lists/"+list+"/codes", admin, "text/csv", csvCodes("T", 300, 50))
	if res.Imported != 50 {
		t.Fatalf("top-up through a follower: %+v", res)
	}
	follower.mustJSON(201, nil, "PUT", "/v1/messages/m1", admin, emailMessage("m1"))
	follower.mustJSON(200, nil, "PUT", "/v1/messages/m1/coupon-list", admin, map[string]string{"list_id": list})
	var alloc struct {
		Assignments []assignment `json:"assignments"`
	}
	recips := make([]string, 40)
	for i := range recips {
		recips[i] = fmt.Sprintf("user%02d@example.com", i)
	}
	follower.mustJSON(200, &alloc, "POST", "/v1/sends/s1/codes", admin, map[string]any{"message_id": "m1", "recipients": recips})
	codes := map[string]bool{}
	for _, a := range alloc.Assignments {
		codes[a.Code] = true
	}
	if len(alloc.Assignments) != 40 || len(codes) != 40 {
		t.Fatalf("allocation through a follower: %d assignments, %d distinct codes", len(alloc.Assignments), len(codes))
	}
	// A strong read through the other follower sees the write at once.
	var l fullList
	for _, cn := range nodes {
		if cn != leader && cn != follower {
			cn.must(200, &l, "GET", "/v1/lists/"+list+"?consistency=strong", admin, "", nil)
		}
	}
	if l.Used != 40 || l.Added != 350 || !l.addsUp() {
		t.Fatalf("strong read through a follower: %+v", l)
	}
	want := waitConverged(t, op, nodes...)
	for _, cn := range nodes {
		if got := cn.n.FSM().Digest(); got != want.Digest {
			t.Fatalf("%s: FSM digest %s, /v1/cluster/digest said %s", cn.id, got, want.Digest)
		}
		if got := sendAssignments(cn, admin, "s1"); len(got) != 40 {
			t.Fatalf("%s: %d assignments, want 40", cn.id, len(got))
		}
	}
	t.Logf("writes through %s over HTTPS: every node at index %d, digest %.12s", follower.id, want.AppliedIndex, want.Digest)

	// The Raft listeners accept only peers with a certificate of the CA.
	other := newTestCA(t, "another CA")
	rogueCert, rogueKey := other.issue("rogue-client")
	goodCert, goodKey := ca.issue("good-client")
	raftAddr := raftAddrOf(t, leader, follower.id)
	if err := raftHandshake(t, raftAddr, ca, goodCert, goodKey); !isTimeout(err) {
		t.Fatalf("Raft connection with a certificate of the CA: %v, want it kept open (a read timeout)", err)
	}
	for _, c := range []struct{ name, cert, key string }{{"another CA's certificate", rogueCert, rogueKey}, {"no certificate", "", ""}} {
		err := raftHandshake(t, raftAddr, ca, c.cert, c.key)
		if err == nil || isTimeout(err) || !strings.Contains(err.Error(), "tls") {
			t.Fatalf("Raft connection with %s: %v, want a TLS refusal", c.name, err)
		}
		t.Logf("Raft connection with %s refused: %v", c.name, err)
	}

	// A fourth node whose certificate another CA signed, trusting the
	// cluster's CA and holding a valid operator token, asks a follower to
	// join. The leader probes its API, cannot verify its certificate, and
	// refuses it: it never becomes a member.
	rcfg := tlsNodeConfig(t, "rogue", other, ca)
	rcfg.RaftAddr = freeAddr(t) // its address must be known to add it by hand below
	rcfg.Join = follower.n.HTTPAddr()
	rcfg.TokenFile = filepath.Join(nodes[0].cfg.DataDir, "operator.token")
	rogue := startClusterNode(t, rcfg, httpsClient(other))
	waitFor(t, 30*time.Second, "the join of the rogue node is refused", func() (bool, string) {
		logs := rogue.logs.String()
		return strings.Contains(logs, "the cluster refused to add this node") && strings.Contains(logs, "node_unreachable"),
			tailString(logs, 600)
	})
	if vs := voters(leader); len(vs) != 3 {
		t.Fatalf("voters after the refused join: %v", vs)
	}
	for _, s := range configServers(t, leader) {
		if s.ID == "rogue" {
			t.Fatalf("the rogue node is in the configuration: %+v", s)
		}
	}
	checkNoLog(t, rogue)

	// Even added by hand (bypassing the probe), Raft's mutual TLS keeps it
	// out: the leader cannot verify its certificate and never sends it the log.
	rogueAddr := rcfg.RaftAddr
	if err := leader.n.Raft().AddNonvoter("rogue", raft.ServerAddress(rogueAddr), 0, 10*time.Second).Error(); err != nil {
		t.Fatalf("add the rogue node as a non-voter: %v", err)
	}
	var failure string
	waitFor(t, 30*time.Second, "the leader fails to reach the rogue node", func() (bool, string) {
		logs := leader.logs.String()
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, rogueAddr) && strings.Contains(line, "certificate") {
				failure = line
				return true, line
			}
		}
		return false, tailString(logs, 600)
	})
	t.Logf("the leader cannot replicate to the rogue node: %s", failure)
	checkNoLog(t, rogue)
	if err := leader.n.Raft().RemoveServer("rogue", 0, 10*time.Second).Error(); err != nil {
		t.Fatalf("remove the rogue node: %v", err)
	}

	// The cluster goes on as before.
	follower.mustJSON(200, &alloc, "POST", "/v1/sends/s1/codes", admin, map[string]any{"message_id": "m1", "recipients": []string{"late@example.com"}})
	end := waitConverged(t, op, nodes...)
	if end.Digest == want.Digest {
		t.Fatal("the last allocation did not change the digest")
	}
	checkNoLog(t, rogue)
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

func configServers(t *testing.T, cn *clusterNode) []raft.Server {
	t.Helper()
	f := cn.n.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	return f.Configuration().Servers
}

// checkNoLog: the node knows no leader, has no configuration and has
// applied nothing.
func checkNoLog(t *testing.T, cn *clusterNode) {
	t.Helper()
	r := cn.n.Raft()
	if addr, id := r.LeaderWithID(); addr != "" || id != "" {
		t.Fatalf("%s knows a leader: %s %s", cn.id, id, addr)
	}
	if r.AppliedIndex() != 0 || r.LastIndex() != 0 || cn.n.FSM().AppliedIndex() != 0 {
		t.Fatalf("%s received the log: raft applied %d, last %d, FSM applied %d",
			cn.id, r.AppliedIndex(), r.LastIndex(), cn.n.FSM().AppliedIndex())
	}
	if !r.LastContact().IsZero() {
		t.Fatalf("%s heard from a leader at %s", cn.id, r.LastContact())
	}
	if n := len(cn.n.FSM().Nodes()); n != 0 {
		t.Fatalf("%s has %d nodes in its directory", cn.id, n)
	}
}
