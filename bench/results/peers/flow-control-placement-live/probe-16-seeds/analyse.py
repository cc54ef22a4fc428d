import json, glob, re, statistics, sys
rows = {}
for f in sorted(glob.glob(sys.argv[1] + '/*.jsonl')):
    label, seed = re.match(r'.*/(\w+)-(\d+)\.jsonl', f).groups()
    turns = [json.loads(l) for l in open(f)]
    ok = sorted((t for t in turns if t['ok']), key=lambda t: t['sent'])
    ttfts = sorted(t['ttft'] * 0.25 for t in ok)
    p90 = ttfts[int(0.9 * len(ttfts))] if ttfts else float('nan')
    burst = ok[:32]
    fast = sum(1 for t in burst if t['pod'] and not t['pod'].startswith('slow'))
    slow_after = sum(1 for t in ok[32:] if t['ttft'] * 0.25 > 0.3)
    failed = sum(1 for t in turns if not t['ok'])
    rows.setdefault(label, []).append((int(seed), p90, fast, slow_after, len(ok), failed))
for label, rs in rows.items():
    rs.sort()
    p90s = [r[1] for r in rs]
    print(f"{label}: {len(rs)} seeds, p90 median {statistics.median(p90s):.3f} (min {min(p90s):.3f}, max {max(p90s):.3f}), "
          f"over 0.3 s: {sum(p > 0.3 for p in p90s)}, burst on fast median {statistics.median(r[2] for r in rs)}, "
          f"turns after burst > 0.3 s median {statistics.median(r[3] for r in rs)}, failed {sum(r[5] for r in rs)}")
    print("  " + ", ".join(f"s{r[0]}: {r[1]:.3f}" for r in rs))
