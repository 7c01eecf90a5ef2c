"""Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/): small hive files and tiny
GGUF files (a valid llama-shaped header with real, tiny tensors, and a few hostile variants).
Run it again only to change the seeds; the files are committed (GGUF seeds as .seed: *.gguf is git-ignored)."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, typ, payload):
    return s(key) + struct.pack("<I", typ) + payload


def u32(key, v):
    return kv(key, 4, struct.pack("<I", v))


def f32(key, v):
    return kv(key, 6, struct.pack("<f", v))


def string(key, v):
    return kv(key, 8, s(v))


def strings(key, vs):
    return kv(key, 9, struct.pack("<IQ", 8, len(vs)) + b"".join(s(v) for v in vs))


def gguf(n_layer=2, blocks=2, embd=8, heads=2, kv_heads=1, ff=16, vocab=4, eps=1e-5):
    kvs = [string("general.architecture", "llama"), string("general.name", "fuzz-seed"),
           u32("llama.block_count", n_layer), u32("llama.embedding_length", embd),
           u32("llama.attention.head_count", heads), u32("llama.attention.head_count_kv", kv_heads),
           u32("llama.feed_forward_length", ff), u32("llama.context_length", 64),
           f32("llama.attention.layer_norm_rms_epsilon", eps), f32("llama.rope.freq_base", 10000.0),
           string("tokenizer.ggml.model", "llama"), strings("tokenizer.ggml.tokens", ["<s>", "</s>", "a", "b"][:vocab])]
    hd = embd // heads
    tensors = [("token_embd.weight", (embd, vocab)), ("output_norm.weight", (embd,)), ("output.weight", (embd, vocab))]
    for i in range(blocks):
        tensors += [(f"blk.{i}.attn_norm.weight", (embd,)), (f"blk.{i}.attn_q.weight", (embd, heads * hd)),
                    (f"blk.{i}.attn_k.weight", (embd, kv_heads * hd)), (f"blk.{i}.attn_v.weight", (embd, kv_heads * hd)),
                    (f"blk.{i}.attn_output.weight", (heads * hd, embd)), (f"blk.{i}.ffn_norm.weight", (embd,)),
                    (f"blk.{i}.ffn_gate.weight", (embd, ff)), (f"blk.{i}.ffn_up.weight", (embd, ff)),
                    (f"blk.{i}.ffn_down.weight", (ff, embd))]
    infos, data, off = b"", b"", 0
    for name, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        infos += s(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        infos += struct.pack("<IQ", 0, off)  # F32
        size = n * 4
        pad = (size + 31) // 32 * 32
        data += b"\0" * pad
        off += pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + infos
    head += b"\0" * ((32 - len(head) % 32) % 32)
    return head + data


def main():
    g = os.path.join(HERE, "corpus", "gguf")
    h = os.path.join(HERE, "corpus", "hive")
    os.makedirs(g, exist_ok=True)
    os.makedirs(h, exist_ok=True)
    seeds = {"valid.seed": gguf(), "eps-negative.seed": gguf(eps=-1.0), "eps-nan.seed": gguf(eps=float("nan")),
             "block-count-3.seed": gguf(n_layer=3), "kv-heads-3.seed": gguf(kv_heads=3),
             "one-block.seed": gguf(n_layer=1, blocks=1)}
    for name, data in seeds.items():
        with open(os.path.join(g, name), "wb") as f:
            f.write(data)
    hives = {
        "matrix.hive": "[hive]\nmodel = m.gguf\n\n[brain SUBJECT]\nrole = subject\njar_gb = 6\n\n"
                       "[brain OBSERVER]\nwatches = SUBJECT\n\n[brain GOD]\nwatches = *\nsees_deaths = yes\n",
        "sampling.hive": "# comment\n; comment\n[brain A]\ntemperature = 0.7\ntop_k = 40\ntop_p = 0.9\n"
                         "min_p = 0.05\nmax_tokens = 64\nseed = 7\njar_tokens = 512\r\n",
        "bom.hive": "\ufeff[brain A]\nrole = single\n",
        "bad.hive": "[brain A\nkey\n[brain A]\n[brain A]\nwatches = A, B, *\n[other]\n",
    }
    for name, text in hives.items():
        with open(os.path.join(h, name), "w", encoding="utf-8", newline="") as f:
            f.write(text)
    with open(os.path.join(h, "nul.hive"), "wb") as f:
        f.write(b"[brain A]\nrole = si\0ngle\n")


if __name__ == "__main__":
    main()
