// `tfm score`: sacreBLEU-compatible corpus BLEU of a hypothesis file against one or more
// reference files (trainer/bleu.h does the scoring).
//
//   tfm score --hyp FILE --ref FILE [--ref FILE2 ...] [--lowercase] [--tokenize 13a|none]
//             [--smooth exp|none|floor|add-k] [--smooth-value X] [--width N]
//             [--format text|json] [--score-only]
//
// Files are read as sacreBLEU's command line reads them: UTF-8, one segment per '\n'-terminated
// line, each line right-stripped of Unicode whitespace ('\r' included). Output (stdout) is
// sacreBLEU's: `-f text` gives one line
//   BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 41.83 71.4/50.0/...
// and `-f json` sacreBLEU's JSON object. Defaults differ from the sacrebleu command line in two
// places, on purpose: text (not JSON) output and 2 decimals (not 1), as in sacreBLEU's Python
// API and its README; `--format json --width 1` reproduces the sacrebleu command's output.
//
// Exit status: 0 on success; 1 when a file is missing or unreadable, is not UTF-8, is empty or
// has a line count that differs from the hypothesis file (the message names the files, the
// counts or the line); 2 on a usage error. Messages go to stderr.
#pragma once
#include <iosfwd>
#include <string>
#include <vector>

namespace tfm {

// argv[0] is the subcommand's name (e.g. "score"); options follow.
int score_main(int argc, char** argv);
// Same, writing to the given streams (for tests and for callers that capture output).
int score_main(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

// The segments of a text file as sacreBLEU's CLI reads them (see above). Throws tfm::Error
// naming the file (and line) when it cannot be opened or read or is not valid UTF-8.
std::vector<std::string> read_segments(const std::string& path);

}  // namespace tfm
