package sink

import (
	"slices"
	"sync"
)

// Stager holds one sink node's output per checkpoint until the checkpoint
// completes (exactly-once mode). Its content is part of every snapshot, so
// output of a completed checkpoint survives a crash before it was
// published. It is safe for concurrent use: the task stages, the snapshot
// reads, the release goroutine peeks and drops.
type Stager struct {
	name   string
	sink   Sink
	mu     sync.Mutex
	epochs []Epoch // ascending ids
}

// Epoch is the output a sink node produced before checkpoint barrier ID.
// Its JSON form is part of the task state file of every checkpoint.
type Epoch struct {
	ID      int64    `json:"id"`
	Outputs []Output `json:"outputs"`
}

// NewStager stages output for the sink named name; restored is what a
// checkpoint held staged (nil when starting empty).
func NewStager(name string, s Sink, restored []Epoch) *Stager {
	return &Stager{name: name, sink: s, epochs: restored}
}

// Name is the name of the sink the output is for.
func (s *Stager) Name() string { return s.name }

// Sink is the sink the output is for.
func (s *Stager) Sink() Sink { return s.sink }

// Stage records outs as the output of the epoch that barrier id closes.
func (s *Stager) Stage(id int64, outs []Output) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(outs) == 0 {
		return
	}
	s.epochs = append(s.epochs, Epoch{ID: id, Outputs: outs})
}

// Pending returns what is staged and not yet dropped; the outputs are
// immutable once staged.
func (s *Stager) Pending() []Epoch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.epochs)
}

// Peek returns, in order, the output of every epoch <= upTo. The epochs
// stay staged, and so in every snapshot, until Drop: output handed to a sink
// that has not confirmed it yet must survive a crash.
func (s *Stager) Peek(upTo int64) []Output {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Output
	for i := 0; i < len(s.epochs) && s.epochs[i].ID <= upTo; i++ {
		out = append(out, s.epochs[i].Outputs...)
	}
	return out
}

// PeekEpochs returns, in order, every epoch <= upTo; they stay staged
// until Drop.
func (s *Stager) PeekEpochs(upTo int64) []Epoch {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i < len(s.epochs) && s.epochs[i].ID <= upTo {
		i++
	}
	return slices.Clone(s.epochs[:i])
}

// Drop forgets every epoch <= upTo, once its output is confirmed.
func (s *Stager) Drop(upTo int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i < len(s.epochs) && s.epochs[i].ID <= upTo {
		i++
	}
	s.epochs = slices.Delete(s.epochs, 0, i)
}
