/*
 * Test-only stand-in for bcryptprimitives.dll, used by scripts/test-windows under wine.
 * NEVER shipped: it lives beside the .exe in target/wine-test/, not in the image.
 *
 * Why: Rust std (1.78+) imports ProcessPrng from bcryptprimitives.dll to seed its hash maps.
 * Every supported Windows Server (1809, 2022, 2025, and nanoserver) has it, but Debian 12's
 * wine 8.0 ships no bcryptprimitives.dll at all, so the loader refuses to start the .exe.
 * Windows' loader looks in the application's directory first, so this DLL placed next to the
 * .exe fills the gap with the older RtlGenRandom (advapi32!SystemFunction036), which wine has.
 */
#include <windows.h>

/* RtlGenRandom has no import-library name of its own; SystemFunction036 is its export. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* Same contract as the real one: fill the buffer, return TRUE (documented to never fail). */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x7fffffffu ? 0x7fffffffu : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
