// Sentence embeddings from an edgedistill bundle on iOS (Swift).
// ONNX bundles: onnxruntime-objc (ORTEnv / ORTSession / ORTValue, bridged to Swift).
// ExecuTorch bundles (.pte): ExecuTorch's Swift API (Module / Tensor / Value; marked experimental upstream).
// Tokenizer: swift-transformers' `Tokenizers` (reads the bundle's tokenizer.json).
// See README.md for the packages and the versions this was written against.
import ExecuTorch
import Foundation
import onnxruntime_objc
import Tokenizers

final class EdgeEmbedder {
    private let manifest: [String: Any]
    private let inputNames: [String]
    private let maxLength: Int
    private let tokenizer: Tokenizer
    private var session: ORTSession?
    private var module: Module?  // not thread-safe: one per thread

    init(bundleURL: URL, threads: Int32 = 4) async throws {
        let data = try Data(contentsOf: bundleURL.appendingPathComponent("manifest.json"))
        manifest = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        inputNames = (manifest["inputs"] as! [[String: Any]]).map { $0["name"] as! String }
        maxLength = manifest["max_length"] as! Int
        tokenizer = try await AutoTokenizer.from(modelFolder: bundleURL)
        let modelPath = bundleURL.appendingPathComponent(manifest["model_file"] as! String).path
        if (manifest["backend"] as? String ?? "onnxruntime") == "onnxruntime" {
            let env = try ORTEnv(loggingLevel: .warning)
            let options = try ORTSessionOptions()
            try options.setIntraOpNumThreads(threads)
            session = try ORTSession(env: env, modelPath: modelPath, sessionOptions: options)
        } else {
            module = Module(filePath: modelPath)
            try module!.load("forward")
        }
    }

    /// The pooled (and, if the manifest says so, L2-normalised) embedding of one text.
    func embed(_ text: String) throws -> [Float] {
        // Truncate like the exporter: keep the first max_length - 1 ids and end with [SEP].
        var ids = tokenizer.encode(text: text)
        if ids.count > maxLength { ids = Array(ids.prefix(maxLength - 1)) + [ids.last!] }
        let columns: [String: [Int64]] = [
            "input_ids": ids.map { Int64($0) },
            "attention_mask": [Int64](repeating: 1, count: ids.count),
            "token_type_ids": [Int64](repeating: 0, count: ids.count),
        ]
        if let session {
            let shape: [NSNumber] = [1, NSNumber(value: ids.count)]
            var feeds: [String: ORTValue] = [:]
            for name in inputNames {
                var values = columns[name]!
                let bytes = NSMutableData(bytes: &values, length: values.count * MemoryLayout<Int64>.stride)
                feeds[name] = try ORTValue(tensorData: bytes, elementType: .int64, shape: shape)
            }
            let out = try session.run(withInputs: feeds, outputNames: ["sentence_embedding"], runOptions: nil)
            let raw = try out["sentence_embedding"]!.tensorData() as Data
            return raw.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        // .pte: inputs and outputs in the manifest's order; a .pte exported with a fixed sequence
        // length needs the ids padded to that length (see "inputs" in manifest.json).
        let inputs = inputNames.map { Tensor<Int64>(columns[$0]!, shape: [1, ids.count]) }
        let outputs = try module!.forward(inputs)
        let names = (manifest["outputs"] as! [[String: Any]]).map { $0["name"] as! String }
        let embedding: Tensor<Float> = outputs[names.firstIndex(of: "sentence_embedding")!].tensor!.asTensor()!
        return embedding.scalars()
    }
}
