// CI tests as the learners call them. A tester answers "i _||_ j | S ?" for the graphs of one job;
// each thread asks through its own Worker, which keeps per-edge state (the Fisher-z worker reuses
// the factorisation of the unchanged prefix of S from one set to the next).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "common.h"
#include "pcorr.h"

namespace cleann {

class CIWorker {
 public:
  virtual ~CIWorker() = default;
  // Starts a sequence of tests of (i, j) in graph `graph` with sets of size `level`.
  virtual void begin(int64_t graph, int i, int j, int level) = 0;
  // kIndependent, kDependent or kSingular for the set S; positions before `first_changed` hold
  // the same nodes as in the previous call since begin().
  virtual int8_t test(const int32_t* S, int first_changed) = 0;
};

class CITester {
 public:
  virtual ~CITester() = default;
  virtual int64_t num_graphs() const = 0;
  virtual int num_nodes() const = 0;
  // Throws ArgumentError when sets of this size cannot be tested (Fisher z: N - l - 3 <= 0).
  virtual void check_level(int level) const = 0;
  virtual std::unique_ptr<CIWorker> worker() const = 0;
};

// Fisher z on a stack of correlation matrices [B, n, n].
class FisherZTester final : public CITester {
 public:
  FisherZTester(const double* corr, int64_t num_graphs, int n, double num_samples, double alpha, double pivot_tol)
      : corr_(corr), B_(num_graphs), n_(n), N_(num_samples), alpha_(alpha), tol_(pivot_tol),
        z_crit_(fisher_z_critical(alpha)) {}

  // The decision constants for sets of size l (throws when N - l - 3 <= 0).
  FisherZ level_constants(int level) const {
    check_level(level);
    const double t = std::tanh(z_crit_ / std::sqrt(N_ - level - 3.0));
    return FisherZ{t, t * t, N_, alpha_, level};
  }

  class Worker final : public CIWorker {
   public:
    explicit Worker(const FisherZTester& t) : t_(t) {}
    void begin(int64_t graph, int i, int j, int level) override {
      R_ = t_.corr_ + graph * static_cast<int64_t>(t_.n_) * t_.n_;
      i_ = i;
      j_ = j;
      Ri_ = R_ + static_cast<int64_t>(i) * t_.n_;
      Rj_ = R_ + static_cast<int64_t>(j) * t_.n_;
      if (level != level_) {
        level_ = level;
        fz_ = t_.level_constants(level);
        buf_.assign(PcorrState::scratch_size(level) + 1, 0.0);
      }
      st_.bind(buf_.data(), level);
      dirty_ = 0;
    }
    int8_t test(const int32_t* S, int first_changed) override {
      dirty_ = first_changed < dirty_ ? first_changed : dirty_;
      st_.update(R_, t_.n_, Ri_, Rj_, S, dirty_, t_.tol_);
      dirty_ = level_;
      double num, di, dj;
      if (!st_.terms(i_, j_, Ri_, Rj_, t_.tol_, num, di, dj)) return kSingular;
      return is_independent(num, di, dj, fz_) ? kIndependent : kDependent;
    }

   private:
    const FisherZTester& t_;
    const double *R_ = nullptr, *Ri_ = nullptr, *Rj_ = nullptr;
    int i_ = 0, j_ = 0, level_ = -1, dirty_ = 0;
    FisherZ fz_{};
    std::vector<double> buf_;
    PcorrState st_{};
  };

  int64_t num_graphs() const override { return B_; }
  int num_nodes() const override { return n_; }
  void check_level(int level) const override { check_dof(N_, level); }
  std::unique_ptr<CIWorker> worker() const override { return std::make_unique<Worker>(*this); }
  Worker concrete_worker() const { return Worker(*this); }

 private:
  const double* corr_;
  int64_t B_;
  int n_;
  double N_, alpha_, tol_, z_crit_;
};

// Perfect CI oracle: d-separation in a DAG whose first `n` nodes are the observed ones (the rest
// are latent). For testing learners: its answers are exactly the DAG's independences.
class DSeparationTester final : public CITester {
 public:
  // parents: CSR over all `total` DAG nodes.
  DSeparationTester(int n, int total, std::vector<int64_t> parent_offset, std::vector<int32_t> parents);

  class Worker final : public CIWorker {
   public:
    explicit Worker(const DSeparationTester& t);
    void begin(int64_t graph, int i, int j, int level) override;
    int8_t test(const int32_t* S, int first_changed) override;

   private:
    friend class DSeparationTester;
    const DSeparationTester& t_;
    int i_ = 0, j_ = 0, level_ = 0;
    std::vector<char> in_z_, anc_z_, seen_up_, seen_down_;
    std::vector<int> stack_;
  };

  int64_t num_graphs() const override { return 1; }
  int num_nodes() const override { return n_; }
  void check_level(int) const override {}
  std::unique_ptr<CIWorker> worker() const override { return std::make_unique<Worker>(*this); }

  bool separated(int x, int y, const int32_t* z, int count, Worker& w) const;

 private:
  friend class Worker;
  int n_, total_;
  std::vector<int64_t> parent_offset_, child_offset_;
  std::vector<int32_t> parents_, children_;
};

}  // namespace cleann
