"""The bare-metal harness: startup code, linker script, semihosting output and a ``main`` that checks results.

No vendor files: the vector table, the reset handler (copy ``.data`` from flash, zero ``.bss``, enable the FPU when
the code is built for one), the linker script and the semihosting calls (``BKPT 0xAB``: ``SYS_WRITE0`` for text,
``SYS_EXIT_EXTENDED`` for the exit status) are written here.

The generated ``main`` runs a list of :class:`Check` s. Each computes an output buffer and compares it, element by
element and bit for bit, with an expected array embedded in the firmware; it prints one line per check::

    CASE <name> OK <elements>
    CASE <name> FAIL <mismatches> <first index> <got hex> <want hex>
    DUMP <name> <offset> <hex bytes>        (only with dump=True: the raw output, 64 bytes a line)
    DONE <failed checks>

and exits with the number of failed checks (at most 125) as its status.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PlanError
from .cgen import c_array, check_ident

STARTUP_C = r"""/* startup: vector table and reset handler (tvm-mp, no vendor code) */
#include <stdint.h>
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);
void vq_exit(int status);
void vq_reset_handler(void) {
  uint32_t *src = &_sidata, *dst = &_sdata;
  while (dst < &_edata) *dst++ = *src++;
  for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
#if defined(__ARM_FP)
  /* CPACR: full access to CP10/CP11 (the FPU) before any float instruction */
  *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
  __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
  vq_exit(main());
}
void vq_fault_handler(void) { vq_exit(126); }
__attribute__((section(".vectors"), used)) const void *const vq_vectors[16] = {
    &_estack, (const void *)vq_reset_handler, (const void *)vq_fault_handler, (const void *)vq_fault_handler,
    (const void *)vq_fault_handler, (const void *)vq_fault_handler, (const void *)vq_fault_handler, 0, 0, 0, 0,
    (const void *)vq_fault_handler, (const void *)vq_fault_handler, 0, (const void *)vq_fault_handler,
    (const void *)vq_fault_handler};
"""

SEMIHOST_C = r"""/* semihosting output and exit (ARM semihosting, BKPT 0xAB) */
#include <stdint.h>
static int32_t vq_semihost(int32_t op, const void *arg) {
  register int32_t r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}
void vq_puts(const char *s) { vq_semihost(0x04, s); }
void vq_exit(int status) {
  uint32_t block[2] = {0x20026u, (uint32_t)status}; /* ADP_Stopped_ApplicationExit, status */
  vq_semihost(0x20, block);                          /* SYS_EXIT_EXTENDED */
  for (;;) {}
}
static char *vq_hex(char *p, uint32_t v, int digits) {
  for (int i = digits - 1; i >= 0; --i) *p++ = "0123456789abcdef"[(v >> (4 * i)) & 0xF];
  return p;
}
static char *vq_dec(char *p, uint32_t v) {
  char tmp[10];
  int n = 0;
  do { tmp[n++] = (char)('0' + v % 10u); v /= 10u; } while (v);
  while (n) *p++ = tmp[--n];
  return p;
}
static char *vq_str(char *p, const char *s) { while (*s) *p++ = *s++; return p; }
/* compare `count` elements of `size` bytes (1 or 4) bit for bit; print the result line; 1 if they differ */
int vq_check(const char *name, const void *got, const void *want, uint32_t count, uint32_t size, int dump) {
  const uint8_t *g = (const uint8_t *)got, *w = (const uint8_t *)want;
  uint32_t bad = 0, first = 0, gv = 0, wv = 0;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t a = 0, b = 0;
    for (uint32_t k = 0; k < size; ++k) {
      a |= (uint32_t)g[i * size + k] << (8 * k);
      b |= (uint32_t)w[i * size + k] << (8 * k);
    }
    if (a != b) { if (!bad) { first = i; gv = a; wv = b; } ++bad; }
  }
  char line[200], *p = line;
  p = vq_str(p, "CASE "); p = vq_str(p, name);
  if (bad) {
    p = vq_str(p, " FAIL "); p = vq_dec(p, bad); *p++ = ' '; p = vq_dec(p, first); *p++ = ' ';
    p = vq_hex(p, gv, 2 * (int)size); *p++ = ' '; p = vq_hex(p, wv, 2 * (int)size);
  } else {
    p = vq_str(p, " OK "); p = vq_dec(p, count);
  }
  *p++ = '\n'; *p = 0;
  vq_puts(line);
  if (dump) {
    uint32_t total = count * size;
    for (uint32_t off = 0; off < total; off += 64) {
      p = line; p = vq_str(p, "DUMP "); p = vq_str(p, name); *p++ = ' '; p = vq_dec(p, off); *p++ = ' ';
      for (uint32_t k = off; k < total && k < off + 64; ++k) p = vq_hex(p, g[k], 2);
      *p++ = '\n'; *p = 0;
      vq_puts(line);
    }
  }
  return bad != 0;
}
"""


def linker_script(flash_origin: int, flash_bytes: int, ram_origin: int, ram_bytes: int) -> str:
    """Code and constants in flash, ``.data`` loaded from flash into RAM, the stack at the top of RAM."""
    return f"""/* tvm-mp MCU firmware layout */
MEMORY {{
  FLASH (rx)  : ORIGIN = 0x{flash_origin:08x}, LENGTH = {flash_bytes}
  RAM   (rwx) : ORIGIN = 0x{ram_origin:08x}, LENGTH = {ram_bytes}
}}
ENTRY(vq_reset_handler)
SECTIONS {{
  .text : {{ KEEP(*(.vectors)) *(.text*) . = ALIGN(4); }} > FLASH
  .rodata : {{ *(.rodata*) . = ALIGN(4); }} > FLASH
  .ARM.exidx : {{ *(.ARM.exidx*) }} > FLASH
  _sidata = LOADADDR(.data);
  .data : {{ _sdata = .; *(.data*) . = ALIGN(4); _edata = .; }} > RAM AT > FLASH
  .bss (NOLOAD) : {{ _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; }} > RAM
  _estack = ORIGIN(RAM) + LENGTH(RAM);
}}
"""


@dataclass(frozen=True, eq=False)
class Check:
    """One result the firmware checks: ``code`` (C statements) fills ``out_name``, compared with ``expected``.

    ``ctype`` is ``uint8_t`` or ``float``; floats are compared by their bit patterns.
    """

    name: str
    code: str
    out_name: str
    ctype: str
    expected: np.ndarray

    def __post_init__(self) -> None:
        check_ident(self.name)
        check_ident(self.out_name)
        if self.ctype not in ("uint8_t", "float"):
            raise PlanError(f"check {self.name}: output type must be uint8_t or float, got {self.ctype}")
        dtype = np.uint8 if self.ctype == "uint8_t" else np.float32
        object.__setattr__(self, "expected", np.ascontiguousarray(np.asarray(self.expected, dtype=dtype)))

    @property
    def count(self) -> int:
        return int(self.expected.size)


def main_source(checks: list[Check], declarations: str = "", dump: bool = False) -> str:
    """``main.c``: output buffers, expected arrays, and ``main`` running every check in order."""
    names = [c.name for c in checks]
    if len(set(names)) != len(names):
        raise PlanError("check names must be unique")
    parts = ["#include <stdint.h>\n",
             "int vq_check(const char *name, const void *got, const void *want, uint32_t count, uint32_t size, "
             "int dump);\nvoid vq_puts(const char *s);\n", declarations]
    body = []
    for c in checks:
        parts.append(f"static {c.ctype} {c.out_name}[{max(c.count, 1)}] __attribute__((aligned(8)));\n")
        if c.ctype == "float":
            parts.append(c_array(f"{c.name}_want", "uint32_t", c.expected.view(np.uint32)))
        else:
            parts.append(c_array(f"{c.name}_want", "uint8_t", c.expected))
        size = 1 if c.ctype == "uint8_t" else 4
        body.append(f"  {{\n{c.code}\n  }}\n"
                    f"  fails += vq_check(\"{c.name}\", {c.out_name}, {c.name}_want, {c.count}u, {size}u, "
                    f"{1 if dump else 0});\n")
    parts.append("int main(void) {\n  int fails = 0;\n" + "".join(body) +
                 "  {\n    char line[24] = \"DONE \";\n    int n = fails, k = 5;\n"
                 "    char tmp[8]; int t = 0;\n    do { tmp[t++] = (char)('0' + n % 10); n /= 10; } while (n);\n"
                 "    while (t) line[k++] = tmp[--t];\n    line[k++] = '\\n'; line[k] = 0;\n    vq_puts(line);\n  }\n"
                 "  return fails > 125 ? 125 : fails;\n}\n")
    return "".join(parts)
