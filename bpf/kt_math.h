/* SPDX-License-Identifier: GPL-2.0 */
/* Arithmetic both program kinds use: included by kerntrace.bpf.h (CO-RE)
 * and kt_bcc.h (BCC), so it needs only the __u types both have. */
#ifndef __KT_MATH_H
#define __KT_MATH_H

/* floor(log2(v)), 0 for v < 2, without a loop (histogram slots). */
static __always_inline __u32 kt_log2_u64(__u64 v)
{
	__u32 r, shift;

	r = (v > 0xffffffffULL) << 5;
	v >>= r;
	shift = (v > 0xffff) << 4;
	v >>= shift;
	r |= shift;
	shift = (v > 0xff) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xf) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	return r;
}

#endif /* __KT_MATH_H */
