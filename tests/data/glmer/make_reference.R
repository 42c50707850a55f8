# Reference fits of lme4::glmer (Laplace, nAGQ = 1) for tests/test_glmm.py.
#
# Run from this folder:  Rscript make_reference.R
# (R and lme4, mlmRev, jsonlite from Debian's packages.) Writes one CSV per dataset and
# reference.json: the log-likelihood, fixed effects and their SEs, θ and Ψ of each fit,
# and the conditional modes with their conditional covariances (ranef's condVar).
# Factor levels are sorted as formulaic sorts them, so that the contrasts match.
# PIRLS runs to tolPwrss = 1e-12: at lme4's default (1e-7) the log-determinant in the
# reported deviance uses the weights of the last-but-one PIRLS iterate, which moved
# cbpp's deviance by 5.6e-4 and its fixed effects by 1.4e-3 SE from the exact Laplace
# optimum; at 1e-12 glmer and hdlmm reach the same optimum.
suppressPackageStartupMessages({library(lme4); library(mlmRev); library(jsonlite)})

sorted_levels <- function(df) {
  for (v in names(df)) if (is.factor(df[[v]]))
    df[[v]] <- factor(as.character(df[[v]]),
                      levels = sort(unique(as.character(df[[v]])), method = "radix"))
  df
}
cbpp <- sorted_levels(as.data.frame(lme4::cbpp))
cbpp$failures <- cbpp$size - cbpp$incidence
contra <- sorted_levels(as.data.frame(mlmRev::Contraception)[, c("use", "age", "urban", "livch", "district")])
contra$use <- as.integer(contra$use == "Y")
ticks <- sorted_levels(as.data.frame(lme4::grouseticks)[, c("TICKS", "YEAR", "HEIGHT", "BROOD")])
ticks$cHEIGHT <- ticks$HEIGHT - mean(ticks$HEIGHT)
data_sets <- list(cbpp = cbpp, contraception = contra, grouseticks = ticks)

models <- list(
  list(name = "cbpp_trials", data = "cbpp", family = "binomial", trials = "size",
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
  list(name = "contraception_intercept", data = "contraception", family = "binomial",
       formula = "use ~ age + I(age^2) + urban + livch + (1 | district)"),
  list(name = "contraception_slope", data = "contraception", family = "binomial",
       formula = "use ~ age + urban + (urban | district)"),
  list(name = "grouseticks_poisson", data = "grouseticks", family = "poisson",
       formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)")
)
for (nm in names(data_sets)) write.csv(data_sets[[nm]], paste0(nm, ".csv"), row.names = FALSE)
out <- list()
for (m in models) {
  fit <- glmer(as.formula(m$formula), data_sets[[m$data]], family = m$family, nAGQ = 1,
               control = glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12,
                                      optCtrl = list(maxfun = 1e5)))
  vc <- VarCorr(fit)[[1]]
  re <- ranef(fit, condVar = TRUE)[[1]]
  post <- attr(re, "postVar")  # q x q x n: the conditional covariances (condVar)
  out[[m$name]] <- list(
    data = paste0(m$data, ".csv"), formula = m$formula, family = m$family,
    loglik = as.numeric(logLik(fit)), fixef = unname(fixef(fit)),
    fixef_names = names(fixef(fit)),
    se = unname(sqrt(diag(as.matrix(vcov(fit))))), theta = unname(getME(fit, "theta")),
    cov_re = unname(as.matrix(vc)), group = names(VarCorr(fit))[1],
    mode_labels = rownames(re), modes = unname(as.matrix(re)),
    cond_var = lapply(seq_len(dim(post)[3]), function(i) unname(post[, , i, drop = TRUE])),
    factors = names(Filter(is.factor, data_sets[[m$data]])))
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "reference.json")
cat("lme4", as.character(packageVersion("lme4")), "\n")
