// Preloaded (node --import) into a measured process: prints its peak RSS and CPU time on exit, on stderr.
process.on('exit', () => {
  const usage = process.resourceUsage();
  process.stderr.write(`\nBENCH ${JSON.stringify({ maxRssKb: usage.maxRSS, userMs: usage.userCPUTime / 1000, systemMs: usage.systemCPUTime / 1000 })}\n`);
});
