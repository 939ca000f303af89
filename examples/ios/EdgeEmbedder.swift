// Sentence embeddings (and classifier labels) from an edgedistill bundle on iOS (Swift).
// ExecuTorch bundles (.pte): the edgedistill C API (ed_open / ed_embed / ed_predict) through
//   EdgeDistill-Bridging-Header.h: bundle verification, the exact tokenizer and the program in one library.
// ONNX bundles: onnxruntime-objc (ORTEnv / ORTSession / ORTValue) with swift-transformers' `Tokenizers`
//   (the C API refuses ONNX bundles).
// Not compiled here (no Xcode or swiftc); see README.md for what was and was not built.
import Foundation
import onnxruntime_objc
import Tokenizers

struct EdgeError: Error, CustomStringConvertible {
    let description: String
}

/// A .pte bundle opened through the C API. Shareable across threads: the library serialises calls on a handle.
final class NativeBundle {
    private let handle: OpaquePointer

    init(path: String, expectId: String? = nil, threads: Int32? = nil) throws {
        var err = [CChar](repeating: 0, count: 1024)
        if let threads, ed_set_threads(threads, &err, err.count) != 0 {  // process-wide, before the first open
            throw EdgeError(description: String(cString: err))
        }
        guard let h = ed_open(path, expectId, &err, err.count) else {
            throw EdgeError(description: String(cString: err))  // the Python runtime's one-line reason
        }
        handle = h
    }

    deinit { ed_close(handle) }

    func embed(_ text: String) throws -> [Float] {
        var err = [CChar](repeating: 0, count: 1024)
        var out = [Float](repeating: 0, count: 4096)
        var dim = 0
        let utf8 = Array(text.utf8)  // Swift strings are Unicode: this is valid UTF-8, with no terminator needed
        let rc = utf8.withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: utf8.count) {
                ed_embed(handle, $0, utf8.count, &out, out.count, &dim, &err, err.count)
            }
        }
        if rc != 0 { throw EdgeError(description: String(cString: err)) }
        return Array(out.prefix(dim))
    }

    /// The label (from the manifest) and its probability.
    func predict(_ text: String) throws -> (label: String, probability: Float) {
        var err = [CChar](repeating: 0, count: 1024)
        var probs = [Float](repeating: 0, count: 1024)
        var n = 0
        var label: Int32 = 0
        var exitUsed: Int32 = -1
        let utf8 = Array(text.utf8)
        let rc = utf8.withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: utf8.count) {
                ed_predict(handle, $0, utf8.count, -1, &probs, probs.count, &n, &label, &exitUsed, &err, err.count)
            }
        }
        if rc != 0 { throw EdgeError(description: String(cString: err)) }
        let name = ed_label(handle, Int(label)).map { String(cString: $0) } ?? String(label)
        return (name, probs[Int(label)])
    }
}

final class EdgeEmbedder {
    private var native: NativeBundle?
    private var session: ORTSession?
    private var tokenizer: Tokenizer?
    private var inputNames: [String] = []
    private var maxLength = 128

    init(bundleURL: URL, threads: Int32 = 4) async throws {
        let data = try Data(contentsOf: bundleURL.appendingPathComponent("manifest.json"))
        let manifest = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        if (manifest["backend"] as? String) == "executorch" {
            native = try NativeBundle(path: bundleURL.path, threads: threads)
            return
        }
        inputNames = (manifest["inputs"] as! [[String: Any]]).map { $0["name"] as! String }
        maxLength = manifest["max_length"] as! Int
        tokenizer = try await AutoTokenizer.from(modelFolder: bundleURL)
        let env = try ORTEnv(loggingLevel: .warning)
        let options = try ORTSessionOptions()
        try options.setIntraOpNumThreads(threads)
        let modelPath = bundleURL.appendingPathComponent(manifest["model_file"] as! String).path
        session = try ORTSession(env: env, modelPath: modelPath, sessionOptions: options)
    }

    /// The pooled (and, if the manifest says so, L2-normalised) embedding of one text.
    func embed(_ text: String) throws -> [Float] {
        if let native { return try native.embed(text) }
        // Truncate like the exporter: keep the first max_length - 1 ids and end with [SEP].
        var ids = tokenizer!.encode(text: text)
        if ids.count > maxLength { ids = Array(ids.prefix(maxLength - 1)) + [ids.last!] }
        let columns: [String: [Int64]] = [
            "input_ids": ids.map { Int64($0) },
            "attention_mask": [Int64](repeating: 1, count: ids.count),
            "token_type_ids": [Int64](repeating: 0, count: ids.count),
        ]
        let shape: [NSNumber] = [1, NSNumber(value: ids.count)]
        var feeds: [String: ORTValue] = [:]
        for name in inputNames {
            var values = columns[name]!
            let bytes = NSMutableData(bytes: &values, length: values.count * MemoryLayout<Int64>.stride)
            feeds[name] = try ORTValue(tensorData: bytes, elementType: .int64, shape: shape)
        }
        let out = try session!.run(withInputs: feeds, outputNames: ["sentence_embedding"], runOptions: nil)
        let raw = try out["sentence_embedding"]!.tensorData() as Data
        return raw.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}
