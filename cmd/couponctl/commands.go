package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coupond/coupond/httpapi/client"
)

// maxChunk is the server's limit of recipients per allocation (SPEC §2).
const maxChunk = 100_000

type runFunc func(ctx context.Context, x *cmdCtx, args []string) error

// command is one "GROUP NAME" of the command line.
type command struct {
	group, name string
	args        string // positional arguments, for usage
	summary     string
	minArgs     int
	maxArgs     int  // -1: no limit
	operator    bool // an operator's call: the default token is operator.token
	noToken     bool
	// setup binds the command's own flags to fs and returns the run
	// function that reads them; run serves commands without flags.
	setup func(fs *flag.FlagSet) runFunc
	run   runFunc
}

// cmdCtx is what a command runs with.
type cmdCtx struct {
	c        *client.Client
	env      *ioEnv
	json     bool
	progress bool
}

var commands = []command{
	{group: "lists", name: "create", args: "NAME", summary: "create an empty list", minArgs: 1, maxArgs: 1, setup: listsCreate},
	{group: "lists", name: "import", args: "NAME FILE|-", summary: "create a list and import a CSV of codes into it in one step", minArgs: 2, maxArgs: 2, setup: listsImport},
	{group: "lists", name: "top-up", args: "LIST FILE|-", summary: "import a CSV of codes into a list", minArgs: 2, maxArgs: 2, setup: listsTopUp},
	{group: "lists", name: "withdraw", args: "LIST FILE|-", summary: "withdraw the unused codes of a CSV from a list", minArgs: 2, maxArgs: 2, setup: listsWithdraw},
	{group: "lists", name: "show", args: "LIST", summary: "show a list's counts and the messages it is assigned to", minArgs: 1, maxArgs: 1, run: listsShow},
	{group: "lists", name: "ls", summary: "list the tenant's lists with their counts", maxArgs: 0, run: listsLs},
	{group: "lists", name: "update", args: "LIST", summary: "rename a list, set its low-stock threshold, fallback code or expiry", minArgs: 1, maxArgs: 1, setup: listsUpdate},
	{group: "lists", name: "forecast", args: "LIST", summary: "will the list last for a send of N recipients, and when does it run out", minArgs: 1, maxArgs: 1, setup: listsForecast},
	{group: "lists", name: "overlaps", args: "LIST", summary: "the other lists that hold codes of a list, with counts and examples", minArgs: 1, maxArgs: 1, run: listsOverlaps},
	{group: "lists", name: "delete", args: "LIST", summary: "delete a list", minArgs: 1, maxArgs: 1, run: listsDelete},

	{group: "messages", name: "put", args: "MESSAGE", summary: "create or replace a message", minArgs: 1, maxArgs: 1, setup: messagesPut},
	{group: "messages", name: "show", args: "MESSAGE", summary: "show a message", minArgs: 1, maxArgs: 1, run: messagesShow},
	{group: "messages", name: "assign", args: "MESSAGE LIST", summary: "give a message its coupon list", minArgs: 2, maxArgs: 2, run: messagesAssign},
	{group: "messages", name: "unassign", args: "MESSAGE", summary: "take a message's coupon list away", minArgs: 1, maxArgs: 1, run: messagesUnassign},
	{group: "messages", name: "preview", args: "MESSAGE FILE|-", summary: "render an HTML template with the message's next code (or --send S --recipient R: that recipient's)", minArgs: 2, maxArgs: 2, setup: messagesPreview},

	{group: "sends", name: "open", args: "SEND", summary: "open a send of a message, optionally holding codes for it", minArgs: 1, maxArgs: 1, setup: sendsOpen},
	{group: "sends", name: "allocate", args: "SEND [RECIPIENT...]", summary: "hand out one code per recipient (arguments, or --file one per line)", minArgs: 1, maxArgs: -1, setup: sendsAllocate},
	{group: "sends", name: "release", args: "SEND FILE|-", summary: "give the codes of undelivered recipients (one per line) back to the list", minArgs: 2, maxArgs: 2, setup: sendsRelease},
	{group: "sends", name: "close", args: "SEND", summary: "close a send; its unused hold goes back to the list", minArgs: 1, maxArgs: 1, run: sendsClose},
	{group: "sends", name: "show", args: "SEND", summary: "show a send", minArgs: 1, maxArgs: 1, run: sendsShow},
	{group: "sends", name: "export", args: "SEND", summary: "export a send's assignments (recipient,code CSV, or JSON)", minArgs: 1, maxArgs: 1, setup: sendsExport},

	{group: "history", name: "recipient", args: "RECIPIENT", summary: "every code a recipient got", minArgs: 1, maxArgs: 1, run: historyRecipient},
	{group: "history", name: "code", args: "LIST CODE", summary: "a code's state and who got it", minArgs: 2, maxArgs: 2, run: historyCode},
	{group: "history", name: "erase", args: "RECIPIENT", summary: "erase a recipient from every assignment (codes stay; exports show an erased form)", minArgs: 1, maxArgs: 1, run: historyErase},

	{group: "tenants", name: "ls", summary: "list the tenants", maxArgs: 0, operator: true, run: tenantsLs},
	{group: "tenants", name: "create", args: "ID NAME", summary: "create a tenant", minArgs: 2, maxArgs: 2, operator: true, run: tenantsCreate},

	{group: "tokens", name: "create", args: "TENANT", summary: "make a token of a tenant (the secret is shown once)", minArgs: 1, maxArgs: 1, operator: true, setup: tokensCreate},
	{group: "tokens", name: "revoke", args: "TOKEN_ID", summary: "revoke a token", minArgs: 1, maxArgs: 1, operator: true, run: tokensRevoke},

	{group: "cluster", name: "status", summary: "the node's view of the cluster", maxArgs: 0, operator: true, run: clusterStatus},
	{group: "cluster", name: "join", args: "ID RAFT_ADDR HTTP_ADDR", summary: "add a started node as a voter", minArgs: 3, maxArgs: 3, operator: true, run: clusterJoin},
	{group: "cluster", name: "remove", args: "ID", summary: "remove a node from the cluster", minArgs: 1, maxArgs: 1, operator: true, run: clusterRemove},
	{group: "cluster", name: "ready", summary: "check /healthz and /readyz (no token needed)", maxArgs: 0, noToken: true, setup: clusterReady},
}

// optUint is a uint64 flag that knows whether it was given.
type optUint struct {
	v   uint64
	set bool
}

func (o *optUint) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.FormatUint(o.v, 10)
}

func (o *optUint) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return errors.New("want a whole number")
	}
	o.v, o.set = v, true
	return nil
}

func (o *optUint) ptr() *uint64 {
	if !o.set {
		return nil
	}
	return &o.v
}

// maxWarningDays is the server's bound of expiry_warning_days.
const maxWarningDays = 3650

// warnDays answers --expiry-warning-days as the client wants it.
func (o *optUint) warnDays() (*uint32, error) {
	if !o.set {
		return nil, nil
	}
	if o.v > maxWarningDays {
		return nil, usagef("--expiry-warning-days must be 0 to %d", maxWarningDays)
	}
	d := uint32(o.v)
	return &d, nil
}

// optString is a string flag that knows whether it was given (an empty
// value is a value).
type optString struct {
	v   string
	set bool
}

func (o *optString) String() string {
	if o == nil {
		return ""
	}
	return o.v
}

func (o *optString) Set(s string) error {
	o.v, o.set = s, true
	return nil
}

func (o *optString) ptr() *string {
	if !o.set {
		return nil
	}
	return &o.v
}

// optTime is a time flag: RFC 3339, or a date (midnight UTC).
type optTime struct {
	v   time.Time
	set bool
}

func (o *optTime) String() string {
	if o == nil || !o.set {
		return ""
	}
	return o.v.Format(time.RFC3339)
}

func (o *optTime) Set(s string) error {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		if t, err = time.Parse(time.DateOnly, s); err != nil {
			return errors.New("want an RFC 3339 time (2026-12-31T23:59:59Z) or a date (2026-12-31)")
		}
	}
	o.v, o.set = t, true
	return nil
}

func (o *optTime) ptr() *time.Time {
	if !o.set {
		return nil
	}
	return &o.v
}

// shortageFlag binds --on-shortage; the policy is checked by the server
// too, but a typo is a usage error here.
func shortageFlag(fs *flag.FlagSet, what string) *string {
	return fs.String("on-shortage", "", "`policy` "+what+": reject (409 when codes run short) or fallback (the list's fallback code)")
}

func shortageOpts(policy string) ([]client.SendOption, error) {
	switch policy {
	case "":
		return nil, nil
	case client.ShortageReject, client.ShortageFallback:
		return []client.SendOption{client.OnShortage(policy)}, nil
	}
	return nil, usagef("--on-shortage must be reject or fallback")
}

// Lists.

func listsCreate(fs *flag.FlagSet) runFunc {
	noDedupe := fs.Bool("no-dedupe", false, "keep repeated codes (a list of one generic code, say)")
	var low, warn optUint
	var fallback optString
	var expires optTime
	fs.Var(&low, "low-stock", "low-stock `threshold` (0: off)")
	fs.Var(&fallback, "fallback-code", "the `code` sends with --on-shortage fallback hand out when the list runs dry")
	fs.Var(&expires, "expires-at", "`time` (RFC 3339, or a date: midnight UTC) from which the list hands out no code")
	fs.Var(&warn, "expiry-warning-days", "`days` before the expiry that the expiry_soon alert goes out (default 7, 0: none)")
	return func(ctx context.Context, x *cmdCtx, a []string) error {
		days, err := warn.warnDays()
		if err != nil {
			return err
		}
		nl := client.NewList{Name: a[0], LowStockThreshold: low.ptr(), FallbackCode: fallback.ptr(),
			ExpiresAt: expires.ptr(), ExpiryWarningDays: days}
		if *noDedupe {
			f := false
			nl.Dedupe = &f
		}
		l, err := x.c.CreateList(ctx, nl)
		if err != nil {
			return err
		}
		return x.emit(l, func(w io.Writer) { listTable(w, []client.List{*l}) })
	}
}

func listsImport(fs *flag.FlagSet) runFunc {
	header := fs.Bool("header", false, "skip the first line")
	noDedupe := fs.Bool("no-dedupe", false, "keep repeated codes")
	key := fs.String("key", "", "Idempotency-Key: a repeat with the same `key` answers the first result")
	gz := fs.Bool("gzip", false, "compress the upload with gzip as it is sent")
	return func(ctx context.Context, x *cmdCtx, a []string) error {
		var dedupe *bool
		if *noDedupe {
			f := false
			dedupe = &f
		}
		var res *client.CreatedList
		err := x.upload(a[1], "import", func(up client.Upload) (err error) {
			up.Header, up.IdempotencyKey, up.Gzip = *header, *key, *gz
			res, err = x.c.CreateAndImport(ctx, a[0], dedupe, up)
			return err
		})
		if err != nil {
			return err
		}
		return x.emit(res, func(w io.Writer) {
			fmt.Fprintf(w, "list %s (%s): imported %d, duplicates %d, available %d, in other lists %d\n",
				res.List.ID, res.List.Name, res.Import.Imported, res.Import.Duplicates, res.Import.Size, res.Import.InOtherLists)
		})
	}
}

func listsTopUp(fs *flag.FlagSet) runFunc {
	header := fs.Bool("header", false, "skip the first line")
	key := fs.String("key", "", "Idempotency-Key: a repeat with the same `key` answers the first result")
	gz := fs.Bool("gzip", false, "compress the upload with gzip as it is sent")
	return func(ctx context.Context, x *cmdCtx, a []string) error {
		var res *client.ImportResult
		err := x.upload(a[1], "top-up", func(up client.Upload) (err error) {
			up.Header, up.IdempotencyKey, up.Gzip = *header, *key, *gz
			res, err = x.c.TopUp(ctx, a[0], up)
			return err
		})
		if err != nil {
			return err
		}
		return x.emit(res, func(w io.Writer) {
			fmt.Fprintf(w, "imported %d, duplicates %d, available %d, in other lists %d\n", res.Imported, res.Duplicates,
				res.Size, res.InOtherLists)
		})
	}
}

func listsWithdraw(fs *flag.FlagSet) runFunc {
	header := fs.Bool("header", false, "skip the first line")
	gz := fs.Bool("gzip", false, "compress the upload with gzip as it is sent")
	return func(ctx context.Context, x *cmdCtx, a []string) error {
		var res *client.WithdrawResult
		err := x.upload(a[1], "withdraw", func(up client.Upload) (err error) {
			up.Header, up.Gzip = *header, *gz
			res, err = x.c.Withdraw(ctx, a[0], up)
			return err
		})
		if err != nil {
			return err
		}
		return x.emit(res, func(w io.Writer) {
			fmt.Fprintf(w, "withdrawn %d, not found %d, already used %d\n", res.Withdrawn, res.NotFound, res.AlreadyUsed)
		})
	}
}

func listsShow(ctx context.Context, x *cmdCtx, a []string) error {
	l, err := x.c.GetList(ctx, a[0])
	if err != nil {
		return err
	}
	return x.emit(l, func(w io.Writer) {
		fallback := "none"
		if l.FallbackCode != nil {
			fallback = *l.FallbackCode
		}
		expiry := "never"
		if l.ExpiresAt != nil {
			expiry = fmt.Sprintf("%s (warning %d days before)", stamp(*l.ExpiresAt), l.ExpiryWarningDays)
			if l.Expired {
				expiry = stamp(*l.ExpiresAt) + " (expired)"
			}
		}
		fields(w,
			"id", l.ID, "name", l.Name, "dedupe", yesNo(l.Dedupe),
			"added", num(l.Added), "available", num(l.Available), "reserved", num(l.Reserved),
			"used", num(l.Used), "withdrawn", num(l.Withdrawn), "used or deleted", num(l.UsedOrDeleted),
			"released", num(l.Released),
			"low stock", fmt.Sprintf("%s (threshold %d)", yesNo(l.LowStock), l.LowStockThreshold),
			"fallback code", fallback, "fallback used", num(l.FallbackUsed),
			"expires", expiry,
			"created", stamp(l.CreatedAt))
		if len(l.AssignedMessages) == 0 {
			fmt.Fprintln(w, "\nassigned to no message")
			return
		}
		fmt.Fprintln(w, "\nassigned to:")
		table(w, []string{"MESSAGE", "NAME", "CAMPAIGN", "TYPE", "STATUS"}, len(l.AssignedMessages), func(i int) []string {
			m := l.AssignedMessages[i]
			return []string{m.ID, m.Name, m.Campaign, m.CampaignType, m.CampaignStatus}
		})
	})
}

func listsLs(ctx context.Context, x *cmdCtx, _ []string) error {
	ls, err := x.c.Lists(ctx)
	if err != nil {
		return err
	}
	if ls == nil {
		ls = []client.List{}
	}
	return x.emit(map[string]any{"lists": ls}, func(w io.Writer) { listTable(w, ls) })
}

func listsUpdate(fs *flag.FlagSet) runFunc {
	name := fs.String("name", "", "new `name`")
	var low, warn optUint
	var fallback optString
	var expires optTime
	fs.Var(&low, "low-stock", "low-stock `threshold` (0: off)")
	fs.Var(&fallback, "fallback-code", "the `code` sends with --on-shortage fallback hand out when the list runs dry")
	clearFallback := fs.Bool("clear-fallback", false, "remove the fallback code")
	fs.Var(&expires, "expires-at", "`time` (RFC 3339, or a date: midnight UTC) from which the list hands out no code")
	noExpiry := fs.Bool("no-expiry", false, "remove the expiry: the list never expires")
	fs.Var(&warn, "expiry-warning-days", "`days` before the expiry that the expiry_soon alert goes out (0: none)")
	return func(ctx context.Context, x *cmdCtx, a []string) error {
		if fallback.set && *clearFallback {
			return usagef("--fallback-code and --clear-fallback contradict each other")
		}
		if expires.set && *noExpiry {
			return usagef("--expires-at and --no-expiry contradict each other")
		}
		days, err := warn.warnDays()
		if err != nil {
			return err
		}
		u := client.ListUpdate{LowStockThreshold: low.ptr(), FallbackCode: fallback.ptr(), ClearFallback: *clearFallback,
			ExpiresAt: expires.ptr(), NoExpiry: *noExpiry, ExpiryWarningDays: days}
		if *name != "" {
			u.Name = name
		}
		if u == (client.ListUpdate{}) {
			return usagef("lists update needs --name, --low-stock, --fallback-code, --clear-fallback, --expires-at, --no-expiry or --expiry-warning-days")
		}
		l, err := x.c.UpdateList(ctx, a[0], u)
		if err != nil {
			return err
		}
		return x.emit(l, func(w io.Writer) { listTable(w, []client.List{*l}) })
	}
}

func listsForecast(fs *flag.FlagSet) runFunc {
	var recipients optUint
	fs.Var(&recipients, "recipients", "`count` of recipients of the planned send (required)")
	send := fs.String("send", "", "a `send` of the list whose hold counts towards the recipients")
	return func(ctx context.Context, x *cmdCtx, a []string) error {
		if !recipients.set {
			return usagef("lists forecast needs --recipients")
		}
		f, err := x.c.Forecast(ctx, a[0], recipients.v, *send)
		if err != nil {
			return err
		}
		return x.emit(f, func(w io.Writer) {
			enough := "yes"
			switch {
			case f.Expired:
				enough = "no: the list has expired"
			case !f.Enough:
				enough = fmt.Sprintf("no: %d codes short", f.Shortfall)
			}
			runsOut := "not at the current rate (no use in the last 7 days)"
			if f.RunsOutAt != nil {
				runsOut = stamp(*f.RunsOutAt)
			}
			expires := "never"
			if f.ExpiresAt != nil {
				expires = stamp(*f.ExpiresAt)
			}
			fields(w, "recipients", num(f.Recipients), "needed", num(f.Needed), "available", num(f.Available),
				"reserved", num(f.Reserved), "enough", enough,
				"used last 7 days", fmt.Sprintf("%d (%.1f a day)", f.UsedLast7Days, f.UsedPerDay),
				"runs out", runsOut, "expires", expires)
		})
	}
}

func listsDelete(ctx context.Context, x *cmdCtx, a []string) error {
	if err := x.c.DeleteList(ctx, a[0]); err != nil {
		return err
	}
	return x.emit(map[string]string{"deleted": a[0]}, func(w io.Writer) { fmt.Fprintf(w, "deleted list %s\n", a[0]) })
}

// Messages.

func messagesPut(fs *flag.FlagSet) runFunc {
	name := fs.String("name", "", "the message's `name` (default: its id)")
	campaign := fs.String("campaign", "", "campaign `name`")
	ctype := fs.String("type", "standard", "campaign `type`: standard, auto, tracking, network_tracking")
	channel := fs.String("channel", "email", "`channel`: email, web_push, app_push, sms, voice, print")
	doi := fs.Bool("doi", false, "a double opt-in message")
	status := fs.String("status", "", "`status`: draft or sent (default: draft for a new message)")
	return func(ctx context.Context, x *cmdCtx, a []string) error {
		in := client.MessageInput{Name: *name, Campaign: *campaign, CampaignType: *ctype, Channel: *channel, DOI: *doi, Status: *status}
		if in.Name == "" {
			in.Name = a[0]
		}
		m, created, err := x.c.PutMessage(ctx, a[0], in)
		if err != nil {
			return err
		}
		verb := "replaced"
		if created {
			verb = "created"
		}
		return x.emit(m, func(w io.Writer) {
			fmt.Fprintf(w, "%s message %s\n", verb, m.ID)
			messageFields(w, m)
		})
	}
}

func messagesShow(ctx context.Context, x *cmdCtx, a []string) error {
	m, err := x.c.GetMessage(ctx, a[0])
	if err != nil {
		return err
	}
	return x.emit(m, func(w io.Writer) { messageFields(w, m) })
}

func messagesAssign(ctx context.Context, x *cmdCtx, a []string) error {
	m, err := x.c.AssignList(ctx, a[0], a[1])
	if err != nil {
		return err
	}
	return x.emit(m, func(w io.Writer) { fmt.Fprintf(w, "message %s now draws from list %s\n", m.ID, a[1]) })
}

func messagesUnassign(ctx context.Context, x *cmdCtx, a []string) error {
	if err := x.c.UnassignList(ctx, a[0]); err != nil {
		return err
	}
	return x.emit(map[string]any{"id": a[0], "coupon_list_id": nil}, func(w io.Writer) {
		fmt.Fprintf(w, "message %s has no coupon list now\n", a[0])
	})
}

// Sends.

func sendsOpen(fs *flag.FlagSet) runFunc {
	message := fs.String("message", "", "the `message` the send delivers (required)")
	var expect optUint
	fs.Var(&expect, "expect", "expected `recipients`: hold that many codes for the send")
	shortage := shortageFlag(fs, "of the send (default reject for a new send; an open send keeps its own)")
	return func(ctx context.Context, x *cmdCtx, a []string) error {
		if *message == "" {
			return usagef("sends open needs --message")
		}
		opts, err := shortageOpts(*shortage)
		if err != nil {
			return err
		}
		s, created, err := x.c.OpenSend(ctx, a[0], *message, expect.ptr(), opts...)
		if err != nil {
			return err
		}
		verb := "send %s is open"
		if created {
			verb = "opened send %s"
		}
		return x.emit(s, func(w io.Writer) {
			fmt.Fprintf(w, verb+" on list %s, %d codes held, on shortage: %s\n", s.SendID, s.ListID, s.Reserved, s.OnShortage)
		})
	}
}

func sendsAllocate(fs *flag.FlagSet) runFunc {
	message := fs.String("message", "", "the send's `message` (needed when the send does not exist yet)")
	file := fs.String("file", "", "read recipients from `file`, one per line (- for stdin)")
	chunk := fs.Int("chunk", 10_000, "recipients per request (at most 100,000)")
	out := fs.String("out", "", "write recipient,code CSV to `file` and print only a summary")
	shortage := shortageFlag(fs, "of a send this command opens")
	return func(ctx context.Context, x *cmdCtx, a []string) error {
		if *chunk < 1 || *chunk > maxChunk {
			return usagef("--chunk must be 1 to %d", maxChunk)
		}
		opts, err := shortageOpts(*shortage)
		if err != nil {
			return err
		}
		send, inline := a[0], a[1:]
		if (*file == "") == (len(inline) == 0) {
			return usagef("sends allocate needs recipients as arguments or --file, not both")
		}
		next := chunksOf(inline, *chunk)
		if *file != "" {
			r, closeIn, err := x.open(*file)
			if err != nil {
				return err
			}
			defer closeIn()
			next = lineChunks(r, *chunk)
		}
		var sink *csv.Writer
		if *out != "" {
			f, err := os.Create(*out)
			if err != nil {
				return fmt.Errorf("cannot write the codes: %w", err)
			}
			defer f.Close()
			bw := bufio.NewWriter(f)
			sink = csv.NewWriter(bw)
			defer func() { sink.Flush(); bw.Flush() }()
		}
		all := client.Allocation{Assignments: []client.Assignment{}}
		var total, fallbacks int
		for {
			rs, err := next()
			if err != nil {
				return err
			}
			if len(rs) == 0 {
				break
			}
			res, err := x.c.Allocate(ctx, send, *message, rs, opts...)
			if err != nil {
				if total > 0 {
					return fmt.Errorf("%w (after %d recipients had their codes; run it again: they keep them)", err, total)
				}
				return err
			}
			total += len(res.Assignments)
			for _, as := range res.Assignments {
				if as.Fallback {
					fallbacks++
				}
			}
			all.Available = res.Available
			if sink != nil {
				for _, as := range res.Assignments {
					sink.Write([]string{as.Recipient, as.Code})
				}
				if sink.Flush(); sink.Error() != nil {
					return fmt.Errorf("cannot write the codes: %w", sink.Error())
				}
			} else {
				all.Assignments = append(all.Assignments, res.Assignments...)
			}
		}
		// A fallback row of the CSV carries the list's fallback code, as
		// the server's CSV does; the summary counts them.
		fallbackNote := ""
		if fallbacks > 0 {
			fallbackNote = fmt.Sprintf(", %d of them the fallback code", fallbacks)
		}
		if sink != nil {
			summary := map[string]any{"send_id": send, "recipients": total, "fallbacks": fallbacks, "available": all.Available, "out": *out}
			return x.emit(summary, func(w io.Writer) {
				fmt.Fprintf(w, "allocated codes to %d recipients of send %s%s (written to %s); the list has %d available\n",
					total, send, fallbackNote, *out, all.Available)
			})
		}
		return x.emit(all, func(w io.Writer) {
			table(w, []string{"RECIPIENT", "CODE", "FALLBACK"}, len(all.Assignments), func(i int) []string {
				as := all.Assignments[i]
				fb := ""
				if as.Fallback {
					fb = "yes"
				}
				return []string{as.Recipient, as.Code, fb}
			})
			fmt.Fprintf(w, "\n%d recipients%s; the list has %d available\n", total, fallbackNote, all.Available)
		})
	}
}

// chunksOf yields s in pieces of at most n, then nil.
func chunksOf(s []string, n int) func() ([]string, error) {
	return func() ([]string, error) {
		c := s[:min(n, len(s))]
		s = s[len(c):]
		return c, nil
	}
}

// lineChunks yields the non-blank lines of r (LF or CRLF) in pieces of at
// most n, then nil; a chunk is read only when the one before was sent, so
// a file of millions of recipients never sits in memory.
func lineChunks(r io.Reader, n int) func() ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return func() ([]string, error) {
		var c []string
		for len(c) < n && sc.Scan() {
			line := strings.TrimSuffix(sc.Text(), "\r")
			if line != "" {
				c = append(c, line)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("cannot read the recipients: %w", err)
		}
		return c, nil
	}
}

func sendsRelease(fs *flag.FlagSet) runFunc {
	chunk := fs.Int("chunk", 10_000, "recipients per request (at most 100,000)")
	return func(ctx context.Context, x *cmdCtx, a []string) error {
		if *chunk < 1 || *chunk > maxChunk {
			return usagef("--chunk must be 1 to %d", maxChunk)
		}
		send := a[0]
		r, closeIn, err := x.open(a[1])
		if err != nil {
			return err
		}
		defer closeIn()
		next := lineChunks(r, *chunk)
		var sum client.ReleaseResult
		var total int
		for {
			rs, err := next()
			if err != nil {
				return err
			}
			if len(rs) == 0 {
				break
			}
			res, err := x.c.Release(ctx, send, rs)
			if err != nil {
				if total > 0 {
					return fmt.Errorf("%w (after %d recipients were done; run it again: those count as already released)", err, total)
				}
				return err
			}
			total += len(rs)
			sum.Released += res.Released
			sum.NotAssigned += res.NotAssigned
			sum.AlreadyReleased += res.AlreadyReleased
		}
		if total == 0 {
			return usagef("sends release needs at least one recipient in %s", a[1])
		}
		return x.emit(sum, func(w io.Writer) {
			fmt.Fprintf(w, "released %d, not assigned %d, already released %d\n", sum.Released, sum.NotAssigned, sum.AlreadyReleased)
		})
	}
}

func sendsClose(ctx context.Context, x *cmdCtx, a []string) error {
	s, err := x.c.CloseSend(ctx, a[0])
	if err != nil {
		return err
	}
	return x.emit(s, func(w io.Writer) { sendFields(w, s) })
}

func sendsShow(ctx context.Context, x *cmdCtx, a []string) error {
	s, err := x.c.GetSend(ctx, a[0])
	if err != nil {
		return err
	}
	return x.emit(s, func(w io.Writer) { sendFields(w, s) })
}

func sendsExport(fs *flag.FlagSet) runFunc {
	out := fs.String("out", "-", "write to `file` (- for stdout)")
	format := fs.String("format", "csv", "csv (recipient,code lines) or json")
	return func(ctx context.Context, x *cmdCtx, a []string) error {
		f := client.CSV
		switch *format {
		case "csv":
		case "json":
			f = client.JSON
		default:
			return usagef("--format must be csv or json")
		}
		var total int64 = -1
		if x.progress && f == client.CSV {
			// The count sizes the bar; a send that grows meanwhile
			// only makes the bar end early.
			s, err := x.c.GetSend(ctx, a[0])
			if err != nil {
				return err
			}
			total = int64(s.Assigned)
		}
		w := x.env.stdout
		if *out != "-" {
			file, err := os.Create(*out)
			if err != nil {
				return fmt.Errorf("cannot write the export: %w", err)
			}
			defer file.Close()
			w = file
		}
		bw := bufio.NewWriterSize(w, 256<<10)
		var m *meter
		var dst io.Writer = bw
		if x.progress {
			m = newMeter(x.env.stderr, "export", total, f == client.CSV)
			dst = &meterWriter{w: bw, m: m}
		}
		n, err := x.c.ExportAssignments(ctx, a[0], dst, f)
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			m.abort()
			return err
		}
		m.finish()
		if *out != "-" {
			fmt.Fprintf(x.env.stderr, "exported %d bytes of send %s to %s\n", n, a[0], *out)
		}
		return nil
	}
}

// History.

func historyRecipient(ctx context.Context, x *cmdCtx, a []string) error {
	h, err := x.c.RecipientHistory(ctx, a[0])
	if err != nil {
		return err
	}
	if h == nil {
		h = []client.HistoryEntry{}
	}
	return x.emit(map[string]any{"assignments": h}, func(w io.Writer) {
		if len(h) == 0 {
			fmt.Fprintf(w, "%s got no code\n", a[0])
			return
		}
		table(w, []string{"CODE", "LIST", "MESSAGE", "SEND", "ASSIGNED AT", "NOTE"}, len(h), func(i int) []string {
			e := h[i]
			var note []string
			if e.Fallback {
				note = append(note, "fallback code")
			}
			if e.ReleasedAt != nil {
				note = append(note, "released "+stamp(*e.ReleasedAt))
			}
			return []string{e.Code, e.ListID, e.MessageID, e.SendID, stamp(e.AssignedAt), strings.Join(note, ", ")}
		})
	})
}

func historyCode(ctx context.Context, x *cmdCtx, a []string) error {
	ci, err := x.c.LookupCode(ctx, a[0], a[1])
	if err != nil {
		return err
	}
	return x.emit(ci, func(w io.Writer) {
		kv := []string{"code", ci.Code, "state", ci.State}
		if as := ci.Assignment; as != nil {
			kv = append(kv, "recipient", as.Recipient, "send", as.SendID, "message", as.MessageID, "assigned at", stamp(as.AssignedAt))
		}
		fields(w, kv...)
	})
}

// Tenants and tokens.

func tenantsLs(ctx context.Context, x *cmdCtx, _ []string) error {
	ts, err := x.c.Tenants(ctx)
	if err != nil {
		return err
	}
	if ts == nil {
		ts = []client.Tenant{}
	}
	return x.emit(map[string]any{"tenants": ts}, func(w io.Writer) {
		table(w, []string{"ID", "NAME", "CREATED"}, len(ts), func(i int) []string {
			return []string{ts[i].ID, ts[i].Name, stamp(ts[i].CreatedAt)}
		})
	})
}

func tenantsCreate(ctx context.Context, x *cmdCtx, a []string) error {
	t, err := x.c.CreateTenant(ctx, a[0], a[1])
	if err != nil {
		return err
	}
	return x.emit(t, func(w io.Writer) { fmt.Fprintf(w, "created tenant %s (%s)\n", t.ID, t.Name) })
}

func tokensCreate(fs *flag.FlagSet) runFunc {
	role := fs.String("role", "", "`role`: admin or sender (required)")
	name := fs.String("name", "", "a `name` to tell the token by")
	return func(ctx context.Context, x *cmdCtx, a []string) error {
		if *role == "" {
			return usagef("tokens create needs --role admin or --role sender")
		}
		t, err := x.c.CreateToken(ctx, a[0], *role, *name)
		if err != nil {
			return err
		}
		return x.emit(t, func(w io.Writer) {
			fields(w, "id", t.ID, "token", t.Token)
			fmt.Fprintln(w, "\nThe token is shown only this once; keep it now.")
		})
	}
}

func tokensRevoke(ctx context.Context, x *cmdCtx, a []string) error {
	if err := x.c.RevokeToken(ctx, a[0]); err != nil {
		return err
	}
	return x.emit(map[string]string{"revoked": a[0]}, func(w io.Writer) { fmt.Fprintf(w, "revoked token %s\n", a[0]) })
}

// Cluster.

func clusterStatus(ctx context.Context, x *cmdCtx, _ []string) error {
	st, err := x.c.Cluster(ctx)
	if err != nil {
		return err
	}
	return x.emit(st, func(w io.Writer) {
		leader := "none"
		if st.Leader != nil {
			leader = *st.Leader
		}
		fields(w, "leader", leader, "term", num(st.Term), "commit index", num(st.CommitIndex), "applied index", num(st.AppliedIndex))
		fmt.Fprintln(w)
		table(w, []string{"ID", "RAFT", "HTTP", "SUFFRAGE", "STATE"}, len(st.Nodes), func(i int) []string {
			n := st.Nodes[i]
			return []string{n.ID, n.RaftAddr, n.HTTPAddr, n.Suffrage, n.State}
		})
	})
}

func clusterJoin(ctx context.Context, x *cmdCtx, a []string) error {
	n := client.Node{ID: a[0], RaftAddr: a[1], HTTPAddr: a[2]}
	added, err := x.c.AddNode(ctx, n)
	if err != nil {
		return err
	}
	return x.emit(map[string]any{"node": n, "added": added}, func(w io.Writer) {
		if added {
			fmt.Fprintf(w, "added %s (raft %s, http %s) as a voter\n", n.ID, n.RaftAddr, n.HTTPAddr)
		} else {
			fmt.Fprintf(w, "%s is a member with these addresses already\n", n.ID)
		}
	})
}

func clusterRemove(ctx context.Context, x *cmdCtx, a []string) error {
	if err := x.c.RemoveNode(ctx, a[0]); err != nil {
		return err
	}
	return x.emit(map[string]string{"removed": a[0]}, func(w io.Writer) { fmt.Fprintf(w, "removed %s\n", a[0]) })
}

func clusterReady(fs *flag.FlagSet) runFunc {
	wait := fs.Duration("wait", 0, "poll until the node is ready, for at most this `duration`")
	return func(ctx context.Context, x *cmdCtx, _ []string) error {
		deadline := time.Now().Add(*wait)
		for {
			err := x.c.Healthz(ctx)
			if err == nil {
				err = x.c.Readyz(ctx)
			}
			if err == nil {
				return x.emit(map[string]string{"status": "ready"}, func(w io.Writer) { fmt.Fprintln(w, "ready") })
			}
			if time.Now().After(deadline) {
				return err
			}
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
		}
	}
}

// open opens an input file, "-" for stdin; it answers its size (0 when
// unknown) and a function that closes it.
func (x *cmdCtx) openSized(path string) (io.Reader, int64, func(), error) {
	if path == "-" {
		return x.env.stdin, 0, func() {}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("cannot read the input: %w", err)
	}
	var size int64
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return f, size, func() { f.Close() }, nil
}

func (x *cmdCtx) open(path string) (io.Reader, func(), error) {
	r, _, closeIn, err := x.openSized(path)
	return r, closeIn, err
}

// upload sends the CSV file at path through do, with a progress bar when
// progress is on. The file stays seekable through the meter, so the client
// can rewind it for a retry.
func (x *cmdCtx) upload(path, verb string, do func(client.Upload) error) error {
	r, size, closeIn, err := x.openSized(path)
	if err != nil {
		return err
	}
	defer closeIn()
	up := client.Upload{Body: r, Size: size}
	var m *meter
	if x.progress {
		total := size
		if total == 0 {
			total = -1
		}
		m = newMeter(x.env.stderr, verb, total, false)
		up.Body = &meterReader{r: r, m: m}
	}
	if err := do(up); err != nil {
		m.abort()
		return err
	}
	m.finish()
	return nil
}
