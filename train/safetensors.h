// The safetensors format, written and read here from scratch:
//
//   [8 bytes] N, the header length, unsigned little-endian
//   [N bytes] a JSON object: {"__metadata__": {string: string},
//                             "<name>": {"dtype": "F32", "shape": [2, 3],
//                                        "data_offsets": [begin, end]}, ...}
//             padded with spaces to a multiple of 8 bytes
//   [rest]    the tensors' raw little-endian bytes, row-major; offsets are relative to the
//             start of this region, and the tensors tile it exactly
//
// Reading validates all of it (sizes, dtypes, offsets in range, no overlaps or gaps, nothing
// after the data) and throws fg::Error naming the file and what is wrong, so a truncated or
// corrupt file is reported, never half-loaded.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace fg::train {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsData {
  std::map<std::string, Tensor> tensors;  // contiguous CPU tensors
  Metadata metadata;
};

// The file's bytes for `tensors` (any device, any layout; copied to the host) and metadata.
std::string safetensors_serialize(const NamedTensors& tensors, const Metadata& metadata = {});
// Parses bytes; `source` names them in errors (usually the path).
SafetensorsData safetensors_parse(const std::string& bytes, const std::string& source);

// Atomic save (train/fileio.h) and load.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const Metadata& metadata = {});
SafetensorsData load_safetensors(const std::string& path);

const char* safetensors_dtype_name(DType t);  // "F32", "BF16", ...

}  // namespace fg::train
