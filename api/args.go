package api

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
)

// ArgCondition limits a rule to the calls whose argument Index compares as
// Operator says with Value (and Mask for MaskedEqual). The conditions of one
// rule must all hold (and); rules naming the same call are alternatives (or).
// Arguments are compared as the unsigned 64-bit register values the kernel
// hands to seccomp; pointers are never followed.
//
// +kubebuilder:validation:XValidation:rule="self.operator == 'MaskedEqual' ? has(self.mask) : !has(self.mask)",message="mask is given with operator MaskedEqual, and only with it"
type ArgCondition struct {
	// Index is the argument's position, 0 to 5.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=5
	Index int `json:"index"`
	// Operator compares the argument with Value.
	Operator ArgOperator `json:"operator"`
	// Value is a number (decimal, or a "0x…" string) or symbolic flag names
	// joined with "|" ("CLONE_NEWUSER|CLONE_NEWNET", "AF_INET"; see
	// ArgSymbols).
	Value ArgValue `json:"value"`
	// Mask, with MaskedEqual only, selects the bits compared:
	// (argument & Mask) == Value.
	// +optional
	Mask ArgValue `json:"mask,omitempty"`
}

// ArgOperator is how an argument is compared. The names are the OCI
// runtime-spec's SCMP_CMP_* operators in words, as the policy's actions are
// words (Allow, Block) rather than SCMP_ACT_* names.
//
// +kubebuilder:validation:Enum=Equal;NotEqual;LessThan;LessEqual;GreaterThan;GreaterEqual;MaskedEqual
type ArgOperator string

// The operators, with their OCI names.
const (
	OpEqual        ArgOperator = "Equal"        // SCMP_CMP_EQ
	OpNotEqual     ArgOperator = "NotEqual"     // SCMP_CMP_NE
	OpLessThan     ArgOperator = "LessThan"     // SCMP_CMP_LT
	OpLessEqual    ArgOperator = "LessEqual"    // SCMP_CMP_LE
	OpGreaterThan  ArgOperator = "GreaterThan"  // SCMP_CMP_GT
	OpGreaterEqual ArgOperator = "GreaterEqual" // SCMP_CMP_GE
	OpMaskedEqual  ArgOperator = "MaskedEqual"  // SCMP_CMP_MASKED_EQ
)

// ArgOperators lists the operators in a fixed order.
var ArgOperators = [...]ArgOperator{OpEqual, OpNotEqual, OpLessThan, OpLessEqual, OpGreaterThan, OpGreaterEqual, OpMaskedEqual}

// Valid reports whether o is one of ArgOperators.
func (o ArgOperator) Valid() bool { return slices.Contains(ArgOperators[:], o) }

// OCI returns the runtime-spec name of o ("SCMP_CMP_EQ", …), or "".
func (o ArgOperator) OCI() string {
	switch o {
	case OpEqual:
		return "SCMP_CMP_EQ"
	case OpNotEqual:
		return "SCMP_CMP_NE"
	case OpLessThan:
		return "SCMP_CMP_LT"
	case OpLessEqual:
		return "SCMP_CMP_LE"
	case OpGreaterThan:
		return "SCMP_CMP_GT"
	case OpGreaterEqual:
		return "SCMP_CMP_GE"
	case OpMaskedEqual:
		return "SCMP_CMP_MASKED_EQ"
	}
	return ""
}

// ArgOperatorFromOCI is the inverse of ArgOperator.OCI.
func ArgOperatorFromOCI(s string) (ArgOperator, bool) {
	for _, o := range ArgOperators {
		if o.OCI() == s {
			return o, true
		}
	}
	return "", false
}

// ArgValue is an argument value as written: a number or "|"-joined symbols.
// In YAML and JSON it is an integer or a string; Uint64 resolves it.
//
// +kubebuilder:validation:XIntOrString
// +kubebuilder:validation:Type=""
type ArgValue string

// UnmarshalJSON takes a JSON number or string.
func (v *ArgValue) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*v = ArgValue(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("argument value %s: want a number or a string", b)
	}
	*v = ArgValue(n.String())
	return nil
}

// MarshalJSON writes a decimal number that fits an int64 as a JSON number
// (what Kubernetes stores), anything else as a string.
func (v ArgValue) MarshalJSON() ([]byte, error) {
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil && strconv.FormatInt(n, 10) == string(v) {
		return []byte(string(v)), nil
	}
	return json.Marshal(string(v))
}

// ArgSymbols are the symbolic values a condition may name. They are the
// same on every Linux ABI kscmp knows: the namespace flags of clone,
// unshare and setns, the address families of socket, and the personality
// values Docker's default profile allows.
var ArgSymbols = map[string]uint64{
	"CLONE_NEWTIME": 0x80, "CLONE_VM": 0x100, "CLONE_FS": 0x200, "CLONE_FILES": 0x400,
	"CLONE_SIGHAND": 0x800, "CLONE_THREAD": 0x10000, "CLONE_NEWNS": 0x20000,
	"CLONE_NEWCGROUP": 0x2000000, "CLONE_NEWUTS": 0x4000000, "CLONE_NEWIPC": 0x8000000,
	"CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000,
	"AF_UNSPEC": 0, "AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_AX25": 3, "AF_IPX": 4,
	"AF_APPLETALK": 5, "AF_X25": 9, "AF_INET6": 10, "AF_KEY": 15, "AF_NETLINK": 16,
	"AF_PACKET": 17, "AF_RDS": 21, "AF_IRDA": 23, "AF_LLC": 26, "AF_IB": 27, "AF_MPLS": 28,
	"AF_CAN": 29, "AF_TIPC": 30, "AF_BLUETOOTH": 31, "AF_IUCV": 32, "AF_RXRPC": 33,
	"AF_ISDN": 34, "AF_PHONET": 35, "AF_IEEE802154": 36, "AF_CAIF": 37, "AF_ALG": 38,
	"AF_NFC": 39, "AF_VSOCK": 40, "AF_KCM": 41, "AF_QIPCRTR": 42, "AF_SMC": 43, "AF_XDP": 44,
	"AF_MCTP":   45,
	"PER_LINUX": 0, "PER_LINUX32": 8, "UNAME26": 0x20000, "ADDR_NO_RANDOMIZE": 0x40000,
	"READ_IMPLIES_EXEC": 0x400000, "PER_QUERY": 0xffffffff,
}

// Uint64 resolves the value: a decimal or 0x-hexadecimal number, or symbols
// of ArgSymbols (and numbers) joined with "|". Negative numbers are refused:
// seccomp compares unsigned registers, and how a negative int reaches one
// depends on the ABI.
func (v ArgValue) Uint64() (uint64, error) {
	s := strings.TrimSpace(string(v))
	if s == "" {
		return 0, fmt.Errorf("empty: want a number or symbols such as CLONE_NEWUSER")
	}
	var out uint64
	for _, part := range strings.Split(s, "|") {
		part = strings.TrimSpace(part)
		if n, ok := ArgSymbols[part]; ok {
			out |= n
			continue
		}
		n, err := strconv.ParseUint(part, 0, 64)
		if err != nil {
			if strings.HasPrefix(part, "-") {
				return 0, fmt.Errorf("%q is negative: want 0 to 2^64-1", part)
			}
			return 0, fmt.Errorf("%q is neither a number from 0 to 2^64-1 nor a known symbol (CLONE_NEW*, AF_*, PER_*)", part)
		}
		out |= n
	}
	return out, nil
}

// Resolved is a condition with its values as numbers.
type Resolved struct {
	Index    int
	Operator ArgOperator
	Value    uint64
	Mask     uint64
}

// Resolve returns c with its values as numbers; c must be valid.
func (c ArgCondition) Resolve() Resolved {
	v, _ := c.Value.Uint64()
	m, _ := c.Mask.Uint64()
	return Resolved{Index: c.Index, Operator: c.Operator, Value: v, Mask: m}
}

// Match reports whether the argument x satisfies the condition.
func (r Resolved) Match(x uint64) bool {
	switch r.Operator {
	case OpEqual:
		return x == r.Value
	case OpNotEqual:
		return x != r.Value
	case OpLessThan:
		return x < r.Value
	case OpLessEqual:
		return x <= r.Value
	case OpGreaterThan:
		return x > r.Value
	case OpGreaterEqual:
		return x >= r.Value
	case OpMaskedEqual:
		return x&r.Mask == r.Value
	}
	return false
}

// String renders the condition for people: "arg0 & 0x10000000 == 0".
func (r Resolved) String() string {
	a := "arg" + strconv.Itoa(r.Index)
	var op string
	switch r.Operator {
	case OpEqual:
		op = "=="
	case OpNotEqual:
		op = "!="
	case OpLessThan:
		op = "<"
	case OpLessEqual:
		op = "<="
	case OpGreaterThan:
		op = ">"
	case OpGreaterEqual:
		op = ">="
	case OpMaskedEqual:
		return fmt.Sprintf("%s & %#x == %#x", a, r.Mask, r.Value)
	}
	return fmt.Sprintf("%s %s %#x", a, op, r.Value)
}

// validateArgs checks a rule's conditions: index 0–5 and at most one
// condition per argument, a known operator, values that resolve and fit the
// ABIs (32 bits when the policy names only 32-bit ABIs), a mask exactly with
// MaskedEqual and a value inside its mask (else the rule never matches).
func validateArgs(field string, args []ArgCondition, arches []Arch, add func(field, value, format string, args ...any)) {
	only32 := len(arches) > 0
	for _, a := range arches {
		if a != ArchX86 && a != ArchARM {
			only32 = false
		}
	}
	for i, c := range args {
		f := fmt.Sprintf("%s.args[%d]", field, i)
		if c.Index < 0 || c.Index > 5 {
			add(f+".index", strconv.Itoa(c.Index), "must be between 0 and 5")
		}
		for j := range i {
			if args[j].Index == c.Index {
				add(f+".index", strconv.Itoa(c.Index), "argument already has a condition in args[%d] of this rule: one per argument (MaskedEqual tests several bits; another rule is an alternative)", j)
				break
			}
		}
		if !c.Operator.Valid() {
			add(f+".operator", string(c.Operator), "unknown operator (want one of Equal, NotEqual, LessThan, LessEqual, GreaterThan, GreaterEqual, MaskedEqual)")
		}
		check := func(name string, v ArgValue) (uint64, bool) {
			n, err := v.Uint64()
			if err != nil {
				add(f+"."+name, string(v), "%v", err)
				return 0, false
			}
			if only32 && bits.Len64(n) > 32 {
				add(f+"."+name, string(v), "does not fit the 32-bit arguments of %s", joinArches(arches))
				return 0, false
			}
			return n, true
		}
		val, okV := check("value", c.Value)
		switch {
		case c.Operator == OpMaskedEqual && c.Mask == "":
			add(f+".mask", "", "missing: operator MaskedEqual compares (argument & mask) with value")
		case c.Operator == OpMaskedEqual:
			if m, okM := check("mask", c.Mask); okM && okV && val&^m != 0 {
				add(f+".value", string(c.Value), "has bits outside mask %s: the condition could never hold", c.Mask)
			}
		case c.Mask != "":
			add(f+".mask", string(c.Mask), "only operator MaskedEqual takes a mask")
		}
	}
}
