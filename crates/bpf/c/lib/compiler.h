/* SPDX-License-Identifier: Apache-2.0 */
/*
 * compiler.h - inlining attributes, for the BPF target and the host-compiled layout probes.
 */
#ifndef SY_LIB_COMPILER_H
#define SY_LIB_COMPILER_H



#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* A function the verifier sees as a frame of its own (bounds the 512-byte BPF stack of a call
 * chain). `unused`: a program may include a header without calling all of it. */
#define SY_NOINLINE __attribute__((noinline, unused))

#endif /* SY_LIB_COMPILER_H */
