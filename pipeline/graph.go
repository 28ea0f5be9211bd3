package pipeline

// This file holds the stage graph: finding its cycles, and drawing it
// (Config.Graph: DOT or Mermaid).

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/stagedserver/seda/port"
)

// cycles returns one cycle for each strongly connected component of the
// graph that has more than one node (self-edges are not in the graph). A
// cycle starts at the component's first node in file order and is a
// shortest way back to it, so the report is stable.
func cycles(edges [][]edge) [][]int {
	n := len(edges)
	// Tarjan's algorithm, iterative so that a long chain cannot exhaust
	// the stack.
	idx := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	comp := make([]int, n)
	for i := range idx {
		idx[i], comp[i] = -1, -1
	}
	var stack []int
	next, ncomp := 0, 0
	type frame struct{ v, e int }
	for root := 0; root < n; root++ {
		if idx[root] >= 0 {
			continue
		}
		call := []frame{{root, 0}}
		idx[root], low[root] = next, next
		next++
		stack = append(stack, root)
		onStack[root] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			if f.e < len(edges[f.v]) {
				w := edges[f.v][f.e].to
				f.e++
				if idx[w] < 0 {
					idx[w], low[w] = next, next
					next++
					stack = append(stack, w)
					onStack[w] = true
					call = append(call, frame{w, 0})
				} else if onStack[w] {
					low[f.v] = min(low[f.v], idx[w])
				}
				continue
			}
			v := f.v
			call = call[:len(call)-1]
			if len(call) > 0 {
				p := call[len(call)-1].v
				low[p] = min(low[p], low[v])
			}
			if low[v] == idx[v] {
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp[w] = ncomp
					if w == v {
						break
					}
				}
				ncomp++
			}
		}
	}
	size := make([]int, ncomp)
	for _, c := range comp {
		size[c]++
	}
	var out [][]int
	done := make([]bool, ncomp)
	for start := 0; start < n; start++ {
		c := comp[start]
		if size[c] < 2 || done[c] {
			continue
		}
		done[c] = true
		// Breadth-first search inside the component for the shortest
		// way from start back to start.
		prev := make([]int, n)
		for i := range prev {
			prev[i] = -1
		}
		queue := []int{start}
		found := -1
		for len(queue) > 0 && found < 0 {
			v := queue[0]
			queue = queue[1:]
			for _, e := range edges[v] {
				if comp[e.to] != c {
					continue
				}
				if e.to == start {
					found = v
					break
				}
				if prev[e.to] < 0 {
					prev[e.to] = v
					queue = append(queue, e.to)
				}
			}
		}
		var cyc []int
		for v := found; v != start; v = prev[v] {
			cyc = append(cyc, v)
		}
		cyc = append(cyc, start)
		for i, j := 0, len(cyc)-1; i < j; i, j = i+1, j-1 {
			cyc[i], cyc[j] = cyc[j], cyc[i]
		}
		out = append(out, cyc)
	}
	return out
}

// Graph writes the stages and the routes between them in format "dot"
// (Graphviz) or "mermaid" (a flowchart). A node shows the stage's name, its
// kind, and "inline" or its queue capacity. There is an edge for every
// stage a stage may emit to: its next, and the value of each Ref field of
// its kind (the spec bound to its Config, as Load binds it), through
// objects and lists (process.route's routes), and any other name its
// Routes lists. An edge to the stage's next is solid, an edge to another
// of its routes dashed; an edge is labelled with the fields that name its
// stage, but for a next (a stage's, or a route's: routes.N.next), so that
// a kind's own Ref fields (a spill or dead-letter stage) read as what they
// are. A route's next on an edge another field labels is named there by
// its list: process.route's edge to a stage that is a route's next and
// its default reads "routes, default", not "default" as if only the
// events that match no route went there. The output is the same for the
// same Config.
func (c *Config) Graph(w io.Writer, format string) error {
	switch format {
	case "dot", "mermaid":
	default:
		return fmt.Errorf("graph: unknown format %q: use dot or mermaid", format)
	}
	index := make(map[string]int, len(c.Stages))
	for i, s := range c.Stages {
		index[s.Name] = i
	}
	bw := bufio.NewWriter(w)
	if format == "dot" {
		fmt.Fprintf(bw, "digraph %s {\n\trankdir=LR;\n\tnode [shape=box];\n", dotQuote(c.Name))
	} else {
		bw.WriteString("flowchart LR\n")
	}
	for i, s := range c.Stages {
		detail := "(inline)"
		if !s.Settings.Inline {
			capacity := s.Settings.Capacity
			if capacity <= 0 {
				capacity = port.DefaultCapacity
			}
			detail = "queue " + strconv.Itoa(capacity)
		}
		if format == "dot" {
			style := ""
			if s.Settings.Inline {
				style = ", style=dashed"
			}
			fmt.Fprintf(bw, "\tn%d [label=%s%s];\n", i, dotQuote(s.Name+"\n"+s.Kind+"\n"+detail), style)
		} else {
			fmt.Fprintf(bw, "\tn%d[\"%s<br/>%s<br/>%s\"]\n", i, mermaidText(s.Name), mermaidText(s.Kind), mermaidText(detail))
		}
	}
	for i, s := range c.Stages {
		for _, e := range graphEdges(s) {
			j, ok := index[e.to]
			if !ok {
				continue
			}
			solid := e.to == s.Next
			switch {
			case format == "dot":
				var attrs []string
				if !solid {
					attrs = append(attrs, "style=dashed")
				}
				if e.label != "" {
					attrs = append(attrs, "label="+dotQuote(e.label))
				}
				if len(attrs) == 0 {
					fmt.Fprintf(bw, "\tn%d -> n%d;\n", i, j)
				} else {
					fmt.Fprintf(bw, "\tn%d -> n%d [%s];\n", i, j, strings.Join(attrs, ", "))
				}
			default:
				arrow := "-.->"
				if solid {
					arrow = "-->"
				}
				if e.label != "" {
					arrow += `|"` + mermaidText(e.label) + `"|`
				}
				fmt.Fprintf(bw, "\tn%d %s n%d\n", i, arrow, j)
			}
		}
	}
	if format == "dot" {
		bw.WriteString("}\n")
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("graph: %w", err)
	}
	return nil
}

// graphEdge is one edge Graph draws: the stage it leads to and its label.
type graphEdge struct {
	to, label string
}

// graphEdges returns the edges of stage s, one per stage it names, in the
// order refsOf finds them (next first), each labelled with the fields
// that name it (their dotted paths without list indices, each once),
// leaving out a next's. A route's next (routes.N.next) is left out only
// while it is all that names the stage: on an edge that another field
// names too it is there as its list ("routes, default"), or the label
// would say that only what that field sends goes there (process.route's
// default: only the events that match no route).
func graphEdges(s *StageConfig) []graphEdge {
	type named struct {
		to     string
		fields []string // in the order found, each once
		other  bool     // a field besides a route's next names it
	}
	var edges []*named
	at := map[string]*named{}
	for _, r := range refsOf(s, s.Config.Fields()) {
		if r.to == "" {
			continue
		}
		e, ok := at[r.to]
		if !ok {
			e = &named{to: r.to}
			at[r.to] = e
			edges = append(edges, e)
		}
		field, route := edgeField(r.path)
		if field == "" || slices.Contains(e.fields, field) {
			continue
		}
		e.fields = append(e.fields, field)
		if !route {
			e.other = true
		}
	}
	out := make([]graphEdge, len(edges))
	for i, e := range edges {
		out[i].to = e.to
		if e.other {
			out[i].label = strings.Join(e.fields, ", ")
		}
	}
	return out
}

// edgeField names the field of a ref's path for an edge's label: the path
// without its list indices ("mirror.1": "mirror"); for a route's next
// ("routes.0.next") the list it is in ("routes"), with route set; ""
// for a stage's next and for a name Routes lists besides ("route").
func edgeField(path string) (field string, route bool) {
	if path == "route" {
		return "", false
	}
	var parts []string
	for _, p := range strings.Split(path, ".") {
		if _, err := strconv.Atoi(p); err != nil {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return "", false
	}
	if parts[len(parts)-1] == "next" {
		return strings.Join(parts[:len(parts)-1], "."), true
	}
	return strings.Join(parts, "."), false
}

// dotQuote quotes s as a DOT string; a newline becomes a line break in
// the label.
func dotQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", "")
	return `"` + r.Replace(s) + `"`
}

// mermaidText escapes s for a quoted Mermaid label.
func mermaidText(s string) string {
	r := strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;", "\n", " ", "\r", "")
	return r.Replace(s)
}
