// json_verdicts OUT INPUT... : the strict JSON reader's verdict on each input file (directories:
// every regular file in them), one JSON line per input in OUT:
//   {"file":"<path>","accepted":true,"canonical":"<canonical form>"}
//   {"file":"<path>","accepted":false,"offset":N,"error":"<message>"}
// json_differential.py then asks Python's json module about the same files.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "paygate/json.hpp"

namespace json = paygate::json;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: json_verdicts OUT INPUT...\n";
        return 2;
    }
    std::vector<fs::path> files;
    for (int i = 2; i < argc; ++i) {
        const fs::path p(argv[i]);
        if (fs::is_directory(p)) {
            for (const auto& entry : fs::directory_iterator(p)) {
                if (entry.is_regular_file()) files.push_back(entry.path());
            }
        } else {
            files.push_back(p);
        }
    }
    std::sort(files.begin(), files.end());

    std::ofstream out(argv[1], std::ios::binary);
    for (const fs::path& file : files) {
        std::ifstream in(file, std::ios::binary);
        const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (!in.good() && !in.eof()) {
            std::cerr << "json_verdicts: cannot read " << file << "\n";
            return 2;
        }
        json::Value value;
        json::ParseError error;
        std::string line = "{\"file\":";
        json::append_string(line, file.string());
        if (json::parse(text, value, error)) {
            line += ",\"accepted\":true,\"canonical\":";
            json::append_string(line, json::canonical(value));
        } else {
            line += ",\"accepted\":false,\"offset\":" + std::to_string(error.offset) + ",\"error\":";
            json::append_string(line, error.message);
        }
        out << line << "}\n";
    }
    out.close();
    if (!out) {
        std::cerr << "json_verdicts: cannot write " << argv[1] << "\n";
        return 2;
    }
    std::cout << "json_verdicts: " << files.size() << " inputs\n";
    return 0;
}
