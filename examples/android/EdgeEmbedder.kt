// Sentence embeddings from an edgedistill bundle on Android (Kotlin).
// ONNX bundles: onnxruntime-android (ai.onnxruntime.OrtEnvironment / OrtSession / OnnxTensor).
// ExecuTorch bundles (.pte): executorch-android (org.pytorch.executorch.Module / Tensor / EValue).
// Tokenizer: DJL's binding of the Hugging Face `tokenizers` library reading the bundle's tokenizer.json.
// See README.md for the Gradle lines and the versions this was written against.
package com.example.edgedistill

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer
import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import org.json.JSONObject
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import java.io.File
import java.nio.LongBuffer

class EdgeEmbedder(bundleDir: File, threads: Int = 4) : AutoCloseable {
    private val manifest = JSONObject(File(bundleDir, "manifest.json").readText())
    private val maxLength = manifest.getInt("max_length")
    private val inputNames = (0 until manifest.getJSONArray("inputs").length())
        .map { manifest.getJSONArray("inputs").getJSONObject(it).getString("name") }
    private val modelFile = File(bundleDir, manifest.getString("model_file"))

    // Same padding/truncation as the exporter: truncate to max_length, [CLS] ... [SEP] kept.
    private val tokenizer = HuggingFaceTokenizer.builder()
        .optTokenizerPath(File(bundleDir, "tokenizer.json").toPath())
        .optTruncation(true)
        .optMaxLength(maxLength)
        .build()

    private val backend = manifest.optString("backend", "onnxruntime")
    private val env = OrtEnvironment.getEnvironment()
    private val session: OrtSession? = if (backend == "onnxruntime") {
        val opts = OrtSession.SessionOptions().apply { setIntraOpNumThreads(threads) }
        env.createSession(modelFile.absolutePath, opts)
    } else null
    // ExecuTorch Module is not thread-safe: use one per thread.
    private val module: Module? = if (backend == "executorch") Module.load(modelFile.absolutePath) else null

    /** The pooled (and, if the manifest says so, L2-normalised) embedding of one text. */
    fun embed(text: String): FloatArray {
        val enc = tokenizer.encode(text)
        val columns = mapOf(
            "input_ids" to enc.ids, "attention_mask" to enc.attentionMask, "token_type_ids" to enc.typeIds,
        )
        val shape = longArrayOf(1, enc.ids.size.toLong())
        session?.let { s ->
            val feeds = inputNames.associateWith { OnnxTensor.createTensor(env, LongBuffer.wrap(columns.getValue(it)), shape) }
            try {
                s.run(feeds).use { result ->
                    @Suppress("UNCHECKED_CAST")
                    return (result.get("sentence_embedding").get().value as Array<FloatArray>)[0]
                }
            } finally {
                feeds.values.forEach { it.close() }
            }
        }
        // .pte: inputs in the manifest's order; outputs in the manifest's order (check "outputs" there:
        // a .pte exported with a fixed sequence length needs the ids padded to that length).
        val args = inputNames.map { EValue.from(Tensor.fromBlob(columns.getValue(it), shape)) }
        val out = module!!.forward(*args.toTypedArray())
        val idx = (0 until manifest.getJSONArray("outputs").length())
            .first { manifest.getJSONArray("outputs").getJSONObject(it).getString("name") == "sentence_embedding" }
        return out[idx].toTensor().dataAsFloatArray
    }

    override fun close() {
        session?.close()
        module?.destroy()
        tokenizer.close()
    }
}
