//! Reconciler: desired state into BPF maps, make-before-break; attach, pin and adopt.
