// Train a two-layer GPT with flashgrad's library API, the way nanoGPT's train.py does: a
// tokenizer, random batches, the model, AdamW with a warm-up and cosine learning rate, the
// loop, an evaluation before and after, and a sample at the end.
//
//   ./build/examples/train_gpt          on the CPU (a few seconds)
//   ./build/examples/train_gpt cuda     on the GPU
//
// It exits with status 1 unless the validation loss fell, so CI runs it as a test.
#include <cstdio>
#include <string>

#include "nn/gpt.h"
#include "train/data.h"
#include "train/optim.h"
#include "train/sample.h"
#include "train/tokenizer.h"
#include "train/trainer.h"

using namespace fg;

int main(int argc, char** argv) {
  const Device device = device_from_string(argc > 1 ? argv[1] : "cpu");
  const int64_t context = 32, batch_size = 8, steps = 50;

  // Data: a character vocabulary of the text, its tokens split 90 / 10 into train and val.
  std::string text;
  for (int i = 0; i < 50; ++i)
    text += "the cat sat on the mat. the dog sat on the log. the sun is hot.\n";
  auto tokenizer = train::Tokenizer::create("char", text);
  const train::TextSplits data =
      train::split_tokens(tokenizer->encode(text), context, /*val_fraction=*/0.1, "the text");

  // The model: 2 blocks of 2 attention heads of dim 32 (the fused flash attention), width 64.
  nn::GPT model(nn::GPTConfig()
                    .vocab_size(tokenizer->vocab_size())
                    .block_size(context)
                    .n_layer(2)
                    .n_head(2)
                    .n_embd(64)
                    .seed(1337));
  model.to(device);
  std::printf("a GPT of %lld parameters on %s\n", (long long)model.num_parameters(),
              device.str().c_str());

  // AdamW (weight decay on matrices only) and the learning rate of every step.
  train::AdamW optimizer(model.named_parameters(),
                         train::AdamWOptions().lr(3e-3).betas(0.9, 0.99).weight_decay(0.1));
  const train::LRSchedule lr{/*max_lr=*/3e-3, /*min_lr=*/3e-4, /*warmup=*/10, /*total=*/steps};

  // The mean loss over 4 fixed val batches (eval mode, no graph).
  auto val_loss = [&] { return train::evaluate(model, data.val, batch_size, 4, /*seed=*/7); };
  const double before = val_loss();
  std::printf("val loss before training: %.4f\n", before);

  // The loop: a batch, forward to the loss, backward, clip the gradient norm, step.
  Generator batches(42);
  model.train();
  for (int64_t step = 0; step < steps; ++step) {
    train::Batch b = train::get_batch(data.train, batch_size, context, batches, device);
    Tensor loss = model.loss(b.x, b.y);
    loss.backward();
    train::clip_grad_norm_(model.parameters(), 1.0);
    optimizer.set_lr(lr.at(step));
    optimizer.step();
    optimizer.zero_grad();
    if (step % 10 == 0 || step == steps - 1)
      std::printf("step %2lld  loss %.4f  lr %.2e\n", (long long)step, loss.item(), lr.at(step));
  }

  const double after = val_loss();
  std::printf("val loss after training:  %.4f\n", after);

  // Text from the trained model, continuing a prompt.
  train::SampleOptions sampling;
  sampling.max_new_tokens = 60;
  sampling.temperature = 0.8;
  sampling.top_k = 5;
  const std::vector<int32_t> prompt = tokenizer->encode("the ");
  std::printf("sample: %s%s\n", tokenizer->decode(prompt).c_str(),
              tokenizer->decode(train::generate(model, prompt, sampling)).c_str());

  if (!(after < before - 0.5)) {
    std::fprintf(stderr, "error: the val loss did not fall by 0.5 (%.4f -> %.4f)\n", before, after);
    return 1;
  }
  return 0;
}
