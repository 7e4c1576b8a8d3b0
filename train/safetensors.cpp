// safetensors writer and validating reader (format in train/safetensors.h).
#include "train/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "tensor/ops.h"
#include "train/fileio.h"
#include "train/json_read.h"

namespace fg::train {

using json = nlohmann::json;

namespace {

bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

bool dtype_from_safetensors(const std::string& s, DType& out) {
  static const std::pair<const char*, DType> table[] = {
      {"F32", DType::f32}, {"F64", DType::f64}, {"BF16", DType::bf16},
      {"F16", DType::f16}, {"I32", DType::i32}, {"I64", DType::i64}};
  for (auto& e : table)
    if (s == e.first) {
      out = e.second;
      return true;
    }
  return false;
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
  }
  return "?";
}

std::string safetensors_serialize(const NamedTensors& tensors, const Metadata& metadata) {
  FG_CHECK(host_is_little_endian(), "safetensors: only little-endian hosts are supported");
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> host;
  size_t offset = 0;
  for (auto& [name, t] : tensors) {
    FG_CHECK(name != "__metadata__" && !header.contains(name),
             "safetensors: duplicate or reserved tensor name '", name, "'");
    FG_CHECK(t.defined(), "safetensors: tensor '", name, "' is undefined");
    Tensor h = ops::contiguous(t.device().is_cpu() ? t.detach() : ops::to_device(t, Device::cpu()));
    size_t n = h.nbytes();
    header[name] = {{"dtype", safetensors_dtype_name(h.dtype())},
                    {"shape", h.shape()},
                    {"data_offsets", {offset, offset + n}}};
    offset += n;
    host.push_back(h);
  }
  std::string head = header.dump();
  while (head.size() % 8 != 0) head.push_back(' ');
  std::string out;
  out.reserve(8 + head.size() + offset);
  uint64_t len = head.size();
  for (int i = 0; i < 8; ++i) out.push_back(char((len >> (8 * i)) & 0xff));
  out += head;
  for (auto& h : host)
    if (h.nbytes() > 0) out.append(static_cast<const char*>(h.data_ptr()), h.nbytes());
  return out;
}

SafetensorsData safetensors_parse(const std::string& bytes, const std::string& source) {
  FG_CHECK(host_is_little_endian(), "safetensors: only little-endian hosts are supported");
  const std::string where = "safetensors file '" + source + "'";
  FG_CHECK(bytes.size() >= 8, where, " is truncated: ", bytes.size(),
           " bytes, fewer than the 8-byte header length");
  uint64_t len = 0;
  for (int i = 0; i < 8; ++i) len |= uint64_t(static_cast<unsigned char>(bytes[size_t(i)])) << (8 * i);
  FG_CHECK(len <= bytes.size() - 8, where, " is truncated or corrupt: its header claims ", len,
           " bytes but only ", bytes.size() - 8, " follow");
  json header;
  try {
    header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + std::ptrdiff_t(len));
  } catch (const json::exception& e) {
    throw Error(str(where, " is corrupt: its JSON header does not parse (", e.what(), ")"));
  }
  FG_CHECK(header.is_object(), where, " is corrupt: the header is not a JSON object");
  const size_t data_begin = 8 + size_t(len);
  const size_t data_size = bytes.size() - data_begin;

  SafetensorsData out;
  struct Range { size_t begin, end; std::string name; };
  std::vector<Range> ranges;
  try {
    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") {
        for (auto m = it->begin(); m != it->end(); ++m)
          out.metadata[m.key()] = m->get<std::string>();
        continue;
      }
      const json& e = *it;
      DType dt;
      std::string dts = e.at("dtype").get<std::string>();
      FG_CHECK(dtype_from_safetensors(dts, dt), where, ": tensor '", it.key(),
               "' has dtype ", dts, ", which flashgrad does not read (F32, F64, BF16, F16, I32, I64)");
      Shape shape = json_numbers<int64_t>(e.at("shape"), str(where, " is corrupt: tensor '", it.key(), "' shape"));
      for (int64_t d : shape)
        FG_CHECK(d >= 0, where, " is corrupt: tensor '", it.key(), "' has a negative size");
      auto offs = json_numbers<uint64_t>(e.at("data_offsets"),
                                        str(where, " is corrupt: tensor '", it.key(), "' data_offsets"));
      FG_CHECK(offs.size() == 2 && offs[0] <= offs[1], where, " is corrupt: tensor '", it.key(),
               "' has bad data_offsets");
      FG_CHECK(offs[1] <= data_size, where, " is truncated: tensor '", it.key(), "' ends at byte ",
               offs[1], " of the data but the file holds only ", data_size);
      uint64_t need = uint64_t(shape_numel(shape)) * dtype_size(dt);
      FG_CHECK(offs[1] - offs[0] == need, where, " is corrupt: tensor '", it.key(), "' of shape ",
               shape_str(shape), " and dtype ", dts, " needs ", need, " bytes but has ",
               offs[1] - offs[0]);
      Tensor t = empty(shape, TensorOptions(dt));
      if (need > 0) std::memcpy(t.data_ptr(), bytes.data() + data_begin + offs[0], need);
      out.tensors[it.key()] = t;
      ranges.push_back({size_t(offs[0]), size_t(offs[1]), it.key()});
    }
  } catch (const json::exception& e) {
    throw Error(str(where, " is corrupt: bad header entry (", e.what(), ")"));
  }
  // The tensors must tile the data region exactly: no overlaps, no gaps, nothing after.
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin || (a.begin == b.begin && a.end < b.end); });
  size_t pos = 0;
  for (auto& r : ranges) {
    FG_CHECK(r.begin == pos, where, " is corrupt: tensor '", r.name, "' starts at byte ", r.begin,
             " of the data, expected ", pos, " (overlap or gap)");
    pos = r.end;
  }
  FG_CHECK(pos == data_size, where, " is corrupt: ", data_size - pos,
           " unexpected bytes after the last tensor");
  return out;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  write_file_atomic(path, safetensors_serialize(tensors, metadata));
}

SafetensorsData load_safetensors(const std::string& path) {
  return safetensors_parse(read_file(path, "safetensors file"), path);
}

}  // namespace fg::train
