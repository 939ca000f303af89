// The edgedistill C API from Java or Kotlin, through the JNI glue in ../../../../jni/edgedistill_jni.c.
// One NativeBundle may be shared by any number of threads: the C library serialises calls on a handle.
// Compiled and run here on Linux x86-64 with OpenJDK 17 only (no Android SDK/NDK): see README.md.
package com.example.edgedistill;

import java.nio.charset.StandardCharsets;

public final class NativeBundle implements AutoCloseable {
    static {
        System.loadLibrary("edgedistill_jni"); // libedgedistill_jni.so, which links libedgedistill.so
    }

    private long handle;

    /** Verify (manifest, format version, every file's sha256; expectId pins the bundle id) and open a bundle folder. */
    public NativeBundle(String path, String expectId) {
        handle = open(path, expectId);
    }

    public String task() { return task(handle); }
    public String bundleId() { return bundleId(handle); }
    public String[] labels() { return labels(handle); }

    public float[] embed(String text) { return embed(handle, utf8(text)); }

    /** Class probabilities (final head); the predicted label is labels()[argmax]. */
    public float[] predict(String text) { return predict(handle, utf8(text), -1f); }

    /** Greedy generation without a chat template (BOS added when the bundle asks for it). */
    public long[] generate(String prompt, int maxNewTokens) {
        return generate(handle, utf8(prompt), true, maxNewTokens, 0f, 0, 1f, 0L);
    }

    public String decode(long[] ids) { return new String(decode(handle, ids), StandardCharsets.UTF_8); }

    @Override
    public synchronized void close() {
        close(handle);
        handle = 0;
    }

    private static byte[] utf8(String s) { return s.getBytes(StandardCharsets.UTF_8); }

    /** Threads of the process-wide ExecuTorch pool; call before opening a bundle. Returns the count now set. */
    public static native int setThreads(int n);
    private static native long open(String path, String expectId);
    private static native void close(long handle);
    private static native String task(long handle);
    private static native String bundleId(long handle);
    private static native String[] labels(long handle);
    private static native float[] embed(long handle, byte[] utf8);
    private static native float[] predict(long handle, byte[] utf8, float exitThreshold);
    private static native long[] generate(long handle, byte[] utf8, boolean addBos, int maxNewTokens, float temperature,
                                          int topK, float topP, long seed);
    private static native byte[] decode(long handle, long[] ids);
}
